package deploy

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/calpresence/calpresence/config"
)

// object is the part of a Kubernetes object the checks read; yaml.v3
// leaves the rest alone, so a misspelt field shows up as one missing.
type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec       yaml.Node         `yaml:"spec"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	// A kustomization's fields.
	Namespace string   `yaml:"namespace"`
	Resources []string `yaml:"resources"`
	Patches   []struct {
		Path  string `yaml:"path"`
		Patch string `yaml:"patch"`
	} `yaml:"patches"`
}

type deploymentSpec struct {
	Replicas *int `yaml:"replicas"`
	Strategy struct {
		Type          string `yaml:"type"`
		RollingUpdate *struct {
			MaxUnavailable any `yaml:"maxUnavailable"` // a number or a percentage
			MaxSurge       any `yaml:"maxSurge"`
		} `yaml:"rollingUpdate"`
	} `yaml:"strategy"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata struct {
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"metadata"`
		Spec podSpec `yaml:"spec"`
	} `yaml:"template"`
}

type podSpec struct {
	AutomountServiceAccountToken  *bool `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot   *bool `yaml:"runAsNonRoot"`
		RunAsUser      *int  `yaml:"runAsUser"`
		RunAsGroup     *int  `yaml:"runAsGroup"`
		FSGroup        *int  `yaml:"fsGroup"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []volume    `yaml:"volumes"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	LivenessProbe   *probe `yaml:"livenessProbe"`
	ReadinessProbe  *probe `yaml:"readinessProbe"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
			Add  []string `yaml:"add"`
		} `yaml:"capabilities"`
		SeccompProfile struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
		Items      []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"secret"`
	PersistentVolumeClaim *struct {
		ClaimName string `yaml:"claimName"`
	} `yaml:"persistentVolumeClaim"`
	EmptyDir *struct{} `yaml:"emptyDir"`
}

type labelSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []yaml.Node       `yaml:"matchExpressions"`
}

type networkPolicySpec struct {
	PodSelector labelSelector `yaml:"podSelector"`
	PolicyTypes []string      `yaml:"policyTypes"`
	Ingress     []struct {
		From []struct {
			PodSelector       *labelSelector `yaml:"podSelector"`
			NamespaceSelector *labelSelector `yaml:"namespaceSelector"`
			IPBlock           *struct {
				CIDR string `yaml:"cidr"`
			} `yaml:"ipBlock"`
		} `yaml:"from"`
		Ports []struct {
			Port     string `yaml:"port"` // a number or a port name
			Protocol string `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"ingress"`
}

// prometheusLabels are the labels the NetworkPolicy admits to the admin
// port: the namespace's Prometheus (the policy says to adapt them).
var prometheusLabels = map[string]string{"app.kubernetes.io/name": "prometheus"}

// only returns the one object of a kind.
func only(t *testing.T, objs map[string]map[string]object, kind string) object {
	t.Helper()
	if len(objs[kind]) != 1 {
		t.Fatalf("%d objects of kind %s; want 1", len(objs[kind]), kind)
	}
	for _, o := range objs[kind] {
		return o
	}
	panic("unreachable")
}

func decodeSpec[T any](t *testing.T, o object) T {
	t.Helper()
	var s T
	if err := o.Spec.Decode(&s); err != nil {
		t.Fatalf("%s %s: spec: %v", o.Kind, o.Metadata.Name, err)
	}
	return s
}

func isTrue(b *bool) bool { return b != nil && *b }

// show prints an optional field for a message.
func show[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// resolvePort turns a probe's or Service's port (a number or a name) into
// the container's port number.
func resolvePort(c container, port string) int {
	if n, err := strconv.Atoi(port); err == nil {
		return n
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return p.ContainerPort
		}
	}
	return 0
}

func TestKubernetesKustomizations(t *testing.T) {
	for _, dir := range []string{"kubernetes/base", "kubernetes/postgres-replicas"} {
		t.Run(dir, func(t *testing.T) {
			k := readDocs[object](t, filepath.Join(dir, "kustomization.yaml"))[0]
			if k.Kind != "Kustomization" || k.Namespace != "calpresence" {
				t.Errorf("kind %q namespace %q; want Kustomization, calpresence", k.Kind, k.Namespace)
			}
			listed := map[string]bool{}
			for _, r := range append(k.Resources, patchPaths(k)...) {
				if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
					t.Errorf("resource or patch %q: %v", r, err)
				}
				listed[path.Clean(r)] = true
			}
			// Every manifest here is applied, except the Secret example,
			// which must not be (it holds placeholders).
			files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
			for _, f := range files {
				name := filepath.Base(f)
				switch {
				case name == "kustomization.yaml":
				case name == "secret.example.yaml" && listed[name]:
					t.Errorf("%s is listed: kubectl apply -k would create a Secret of placeholders", name)
				case name != "secret.example.yaml" && !listed[name]:
					t.Errorf("%s is in %s but not in kustomization.yaml", name, dir)
				}
			}
		})
	}
}

func patchPaths(k object) []string {
	var out []string
	for _, p := range k.Patches {
		if p.Path != "" {
			out = append(out, p.Path)
		}
	}
	return out
}

// TestKubernetesBase checks the one-replica manifests as kubectl apply -k
// applies them.
func TestKubernetesBase(t *testing.T) {
	objs := kustomize(t, "kubernetes/base")
	secret := readDocs[object](t, "kubernetes/base/secret.example.yaml")[0]
	checkOneReplica(t, objs, secret)
}

// TestKubernetesPostgresReplicas checks the two-replica overlay as
// kustomize applies it to the base (checkReplicas), and that it is built
// on the base rather than beside it.
func TestKubernetesPostgresReplicas(t *testing.T) {
	const dir = "kubernetes/postgres-replicas"
	k := readDocs[object](t, filepath.Join(dir, "kustomization.yaml"))[0]
	if !slices.Contains(k.Resources, "../base") || !slices.Contains(k.Resources, "pdb.yaml") {
		t.Errorf("resources = %q; want ../base and pdb.yaml", k.Resources)
	}
	if p := patchPaths(k); !slices.Contains(p, "deployment.yaml") || !slices.Contains(p, "configmap.yaml") {
		t.Errorf("patches = %q; want deployment.yaml and configmap.yaml", p)
	}
	secret := readDocs[object](t, filepath.Join(dir, "secret.example.yaml"))[0]
	baseSecret := readDocs[object](t, "kubernetes/base/secret.example.yaml")[0]
	for key := range baseSecret.StringData {
		if _, ok := secret.StringData[key]; !ok {
			t.Errorf("secret.example.yaml lacks the base's key %q", key)
		}
	}
	checkReplicas(t, kustomize(t, dir), secret)
}

// deployment is what checkDeployment read from a rendered set of objects,
// for the checks of one mode.
type deployment struct {
	spec    deploymentSpec
	c       container
	mounts  map[string]volume // mount path → volume
	cfg     *config.Config
	cfgText string
}

// checkDeployment checks what every way of running calpresence on
// Kubernetes shares, on objs as they are applied (the kustomize
// manifests', the Helm chart's), with secret the Secret the pods read:
// the pod's security, the command, ports and probes on server.listen, the
// Service, the configuration mounted where the CLI reads it and loading in
// the pod's environment, the secrets as files, the NetworkPolicy.
func checkDeployment(t *testing.T, objs map[string]map[string]object, secret object) deployment {
	t.Helper()
	dep := only(t, objs, "Deployment")
	spec := decodeSpec[deploymentSpec](t, dep)
	pod := spec.Template.Spec
	port := listenPort(t)
	df := readDockerfile(t)

	if len(objs["Secret"]) > 0 {
		t.Errorf("Secrets %v are applied: credentials come from a Secret created beforehand, never from the repository", keys(objs["Secret"]))
	}
	if !subset(spec.Selector.MatchLabels, spec.Template.Metadata.Labels) {
		t.Errorf("selector %v does not match the pod labels %v", spec.Selector.MatchLabels, spec.Template.Metadata.Labels)
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || float64(*g) <= shutdownMax.Seconds() {
		t.Errorf("terminationGracePeriodSeconds = %s; want above server.shutdown_timeout %v", show(g), shutdownMax)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("automountServiceAccountToken = %s; want false (calpresence never calls the Kubernetes API)", show(pod.AutomountServiceAccountToken))
	}

	// Security: the restricted Pod Security Standard and the image's user.
	sc := pod.SecurityContext
	if !isTrue(sc.RunAsNonRoot) || sc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("pod securityContext: runAsNonRoot %s, seccompProfile %q; want true, RuntimeDefault", show(sc.RunAsNonRoot), sc.SeccompProfile.Type)
	}
	if user, _, _ := strings.Cut(df.user, ":"); sc.RunAsUser == nil || strconv.Itoa(*sc.RunAsUser) != user {
		t.Errorf("runAsUser = %s; want the image's USER %s", show(sc.RunAsUser), df.user)
	}
	if sc.FSGroup == nil {
		t.Error("pod securityContext: no fsGroup; the state volume would not be writable by the non-root user")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers; want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	csc := c.SecurityContext
	if !isTrue(csc.RunAsNonRoot) || !isTrue(csc.ReadOnlyRootFilesystem) || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		!slices.Equal(csc.Capabilities.Drop, []string{"ALL"}) || len(csc.Capabilities.Add) > 0 || csc.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("container securityContext: runAsNonRoot %s, readOnlyRootFilesystem %s, allowPrivilegeEscalation %s, capabilities drop %v add %v, seccomp %q; want true, true, false, [ALL], none, RuntimeDefault",
			show(csc.RunAsNonRoot), show(csc.ReadOnlyRootFilesystem), show(csc.AllowPrivilegeEscalation), csc.Capabilities.Drop, csc.Capabilities.Add, csc.SeccompProfile.Type)
	}

	// The command: the image's entrypoint with run, reading the default path.
	if len(c.Command) > 0 {
		t.Errorf("command = %q; leave the image's ENTRYPOINT", c.Command)
	}
	if sub, cfgPath := commandLine(c.Args); sub != "run" || cfgPath != config.DefaultPath {
		t.Errorf("args = %q; want run reading %s", c.Args, config.DefaultPath)
	}

	// Ports and probes agree with server.listen. The readiness probe is
	// /readyz, which a standby replica passes while it reaches the database.
	var ports []int
	for _, p := range c.Ports {
		ports = append(ports, p.ContainerPort)
	}
	if !slices.Equal(ports, []int{port}) {
		t.Errorf("container ports = %v; want [%d] (server.listen %q)", ports, port, defaults.Server.Listen)
	}
	for _, pr := range []struct {
		name  string
		probe *probe
		path  string
	}{{"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe on %s", pr.name, pr.path)
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path || resolvePort(c, pr.probe.HTTPGet.Port) != port {
			t.Errorf("%s = %s on port %q; want %s on %d", pr.name, pr.probe.HTTPGet.Path, pr.probe.HTTPGet.Port, pr.path, port)
		}
	}
	ann := spec.Template.Metadata.Annotations
	if ann["prometheus.io/port"] != strconv.Itoa(port) || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus.io annotations = %v; want port %d, path /metrics", ann, port)
	}
	svc := only(t, objs, "Service")
	svcSpec := decodeSpec[struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	}](t, svc)
	if !subset(svcSpec.Selector, spec.Template.Metadata.Labels) {
		t.Errorf("Service selector %v does not match the pod labels %v", svcSpec.Selector, spec.Template.Metadata.Labels)
	}
	for _, p := range svcSpec.Ports {
		if resolvePort(c, p.TargetPort) != port {
			t.Errorf("Service targetPort %q; want the container's %d", p.TargetPort, port)
		}
	}

	// Volumes: each mounted, read-only when it is configuration, without
	// subPath.
	vols := map[string]volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]volume{}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Errorf("volumeMount %q: no such volume", m.Name)
		}
		mounted[m.Name] = true
		if m.SubPath != "" {
			t.Errorf("volumeMount %q uses subPath: updates to it would never reach the pod", m.Name)
		}
		mounts[m.MountPath] = v
		if (v.ConfigMap != nil || v.Secret != nil) && !m.ReadOnly {
			t.Errorf("volumeMount %q at %s: want readOnly", m.Name, m.MountPath)
		}
	}
	for name := range vols {
		if !mounted[name] {
			t.Errorf("volume %q is mounted nowhere", name)
		}
	}
	cmVol := mounts[configDir]
	if cmVol.ConfigMap == nil {
		t.Fatalf("no ConfigMap mounted at %s, where calpresence reads %s", configDir, config.DefaultPath)
	}
	cm, ok := objs["ConfigMap"][cmVol.ConfigMap.Name]
	if !ok {
		t.Fatalf("ConfigMap %q is mounted but not applied", cmVol.ConfigMap.Name)
	}
	cfgText, ok := cm.Data[configFile]
	if !ok {
		t.Fatalf("ConfigMap %q has no key %s (mounted as %s)", cm.Metadata.Name, configFile, config.DefaultPath)
	}

	// The environment, from the Secret.
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secret.StringData[ref.Key]
			if ref.Name != secret.Metadata.Name || !ok {
				t.Errorf("env %s: secret %q key %q; the example Secret is %q with keys %v", e.Name, ref.Name, ref.Key, secret.Metadata.Name, keys(secret.StringData))
			}
			env[e.Name] = v
		}
	}
	files := secretFiles(t, mounts, secret)

	// The ConfigMap's configuration loads as the pod would load it.
	cfg, err := loadAsDeployed(t, cfgText, env, files)
	if err != nil {
		t.Fatalf("the ConfigMap's %s does not load in the pod's environment: %v", configFile, err)
	}
	checkListen(t, "ConfigMap", cfg, port)
	if g := pod.TerminationGracePeriodSeconds; g != nil && float64(*g) <= cfg.Server.ShutdownTimeout.Seconds() {
		t.Errorf("terminationGracePeriodSeconds %d is not above the ConfigMap's shutdown_timeout %v", *g, cfg.Server.ShutdownTimeout)
	}
	if cfg.Graph.DryRun {
		t.Error("the ConfigMap's configuration is a dry run: a dry run calls no Graph, keeps its state in memory and elects no leader")
	}
	if want := secret.StringData["graph-client-secret"]; want == "" || string(cfg.Graph.ClientSecret) != want {
		t.Errorf("client secret = %q; want the Secret's graph-client-secret, through the mounted file", string(cfg.Graph.ClientSecret))
	}
	checkNetworkPolicy(t, objs, c, spec.Template.Metadata.Labels)
	return deployment{spec: spec, c: c, mounts: mounts, cfg: cfg, cfgText: cfgText}
}

// checkOneReplica checks the default deployment (checkDeployment): one
// replica, replaced rather than rolled, with the bbolt state file where
// state.path says, on a ReadWriteOnce claim.
func checkOneReplica(t *testing.T, objs map[string]map[string]object, secret object) {
	t.Helper()
	d := checkDeployment(t, objs, secret)
	if d.spec.Replicas == nil || *d.spec.Replicas != 1 || d.spec.Strategy.Type != "Recreate" {
		t.Errorf("replicas %s, strategy %q; want 1 and Recreate (the bbolt state file takes one process)", show(d.spec.Replicas), d.spec.Strategy.Type)
	}
	if d.cfg.State.Driver == config.DriverPostgres || d.cfg.State.Path != defaults.State.Path {
		t.Errorf("state: driver %q, path %q; want the bbolt file %q, on the claim", d.cfg.State.Driver, d.cfg.State.Path, defaults.State.Path)
	}
	stVol := d.mounts[stateDir]
	if stVol.PersistentVolumeClaim == nil {
		t.Fatalf("no PersistentVolumeClaim mounted at %s (the directory of state.path)", stateDir)
	}
	pvc, ok := objs["PersistentVolumeClaim"][stVol.PersistentVolumeClaim.ClaimName]
	if !ok {
		t.Fatalf("claim %q is mounted but not applied", stVol.PersistentVolumeClaim.ClaimName)
	}
	if am := decodeSpec[struct {
		AccessModes []string `yaml:"accessModes"`
	}](t, pvc).AccessModes; !slices.Equal(am, []string{"ReadWriteOnce"}) {
		t.Errorf("claim accessModes = %v; want [ReadWriteOnce]", am)
	}
	if len(objs["PodDisruptionBudget"]) > 0 {
		t.Error("a PodDisruptionBudget over one replica would block every node drain")
	}
}

// checkReplicas checks the deployment with several replicas
// (checkDeployment): two replicas rolled one at a time, a
// PodDisruptionBudget over the pods, no volume claim, and the state in
// PostgreSQL at the DSN the Secret mounts.
func checkReplicas(t *testing.T, objs map[string]map[string]object, secret object) {
	t.Helper()
	d := checkDeployment(t, objs, secret)
	spec := d.spec
	if spec.Replicas == nil || *spec.Replicas != 2 || spec.Strategy.Type != "RollingUpdate" {
		t.Errorf("replicas %s, strategy %q; want 2 and RollingUpdate", show(spec.Replicas), spec.Strategy.Type)
	}
	if ru := spec.Strategy.RollingUpdate; ru == nil || fmt.Sprint(ru.MaxUnavailable) != "0" || fmt.Sprint(ru.MaxSurge) != "1" {
		t.Errorf("rollingUpdate = %+v; want maxUnavailable 0 and maxSurge 1 (a new pod is ready before an old one stops)", ru)
	}

	// The PodDisruptionBudget keeps one of the Deployment's pods.
	pdb := only(t, objs, "PodDisruptionBudget")
	pdbSpec := decodeSpec[struct {
		MinAvailable *int `yaml:"minAvailable"`
		Selector     struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	}](t, pdb)
	if pdbSpec.MinAvailable == nil || *pdbSpec.MinAvailable != 1 {
		t.Errorf("PodDisruptionBudget minAvailable = %s; want 1", show(pdbSpec.MinAvailable))
	}
	if !subset(pdbSpec.Selector.MatchLabels, spec.Template.Metadata.Labels) || !subset(spec.Selector.MatchLabels, pdbSpec.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget selector %v; want the Deployment's pods (labels %v, selector %v)", pdbSpec.Selector.MatchLabels, spec.Template.Metadata.Labels, spec.Selector.MatchLabels)
	}

	// No claim: two replicas share no ReadWriteOnce volume.
	if len(objs["PersistentVolumeClaim"]) > 0 {
		t.Errorf("PersistentVolumeClaims %v are applied; the state is in PostgreSQL", keys(objs["PersistentVolumeClaim"]))
	}
	for p, v := range d.mounts {
		if v.PersistentVolumeClaim != nil {
			t.Errorf("%s is on claim %q: two replicas share no ReadWriteOnce volume", p, v.PersistentVolumeClaim.ClaimName)
		}
	}
	if v := d.mounts[stateDir]; v.EmptyDir == nil {
		t.Errorf("%s: want an emptyDir in place of the claim (nothing is written there with driver postgres)", stateDir)
	}

	// The state in PostgreSQL, at the DSN the Secret's postgres-dsn holds.
	const dsnPath = "/run/secrets/calpresence/postgres-dsn"
	dsn := secret.StringData["postgres-dsn"]
	if dsn == "" {
		t.Fatalf("the example Secret %q has no postgres-dsn", secret.Metadata.Name)
	}
	if d.cfg.State.Driver != config.DriverPostgres || string(d.cfg.State.DSN) != dsn || d.cfg.State.Path != "" {
		t.Errorf("state: driver %q, dsn %v, path %q; want postgres, the Secret's postgres-dsn (through state.dsn_file), no path", d.cfg.State.Driver, d.cfg.State.DSN, d.cfg.State.Path)
	}
	if !strings.Contains(d.cfgText, dsnPath) {
		t.Errorf("the configuration does not read the DSN from %s (state.dsn_file)", dsnPath)
	}
}

// checkNetworkPolicy checks the NetworkPolicy of objs against the pods
// (their labels and container c): it selects them for ingress; the admin
// port (server.listen's) admits only pods labelled as the namespace's
// Prometheus; the webhooks port, once declared, admits the ingress
// controller; and every port the container declares is admitted by a rule.
func checkNetworkPolicy(t *testing.T, objs map[string]map[string]object, c container, podLabels map[string]string) {
	t.Helper()
	np := only(t, objs, "NetworkPolicy")
	spec := decodeSpec[networkPolicySpec](t, np)
	if len(spec.PodSelector.MatchExpressions) > 0 || !subset(spec.PodSelector.MatchLabels, podLabels) {
		t.Errorf("NetworkPolicy podSelector %v does not select the calpresence pods (labels %v)", spec.PodSelector.MatchLabels, podLabels)
	}
	if !slices.Contains(spec.PolicyTypes, "Ingress") {
		t.Errorf("NetworkPolicy policyTypes = %q; want Ingress", spec.PolicyTypes)
	}
	admin := listenPort(t)
	webhooksPort := func() int {
		_, p, _ := net.SplitHostPort(config.DefaultWebhooks().Listen)
		n, _ := strconv.Atoi(p)
		return n
	}()
	selfservicePort := portOf(t, "selfservice.listen", defaults.Selfservice.Listen)
	var adminAdmitted, webhooksAdmitted, selfserviceAdmitted bool
	admitted := map[int]bool{}
	for i, rule := range spec.Ingress {
		// The ports of the rule; none listed means every port.
		covers := func(port int, name string) bool {
			if len(rule.Ports) == 0 {
				return true
			}
			for _, p := range rule.Ports {
				if p.Protocol != "" && p.Protocol != "TCP" {
					continue
				}
				if p.Port == name || p.Port == strconv.Itoa(port) || resolvePort(c, p.Port) == port {
					return true
				}
			}
			return false
		}
		for _, p := range c.Ports {
			if covers(p.ContainerPort, p.Name) && len(rule.From) > 0 {
				admitted[p.ContainerPort] = true
			}
		}
		if covers(webhooksPort, "webhooks") && len(rule.From) > 0 {
			webhooksAdmitted = true
		}
		if covers(selfservicePort, "selfservice") && len(rule.From) > 0 {
			selfserviceAdmitted = true
		}
		if !covers(admin, "http") {
			continue
		}
		if len(rule.From) == 0 {
			t.Errorf("NetworkPolicy ingress[%d] admits anyone to the admin port %d", i, admin)
		}
		for j, peer := range rule.From {
			if peer.IPBlock != nil || peer.NamespaceSelector != nil || peer.PodSelector == nil ||
				len(peer.PodSelector.MatchExpressions) > 0 || !subset(prometheusLabels, peer.PodSelector.MatchLabels) {
				t.Errorf("NetworkPolicy ingress[%d].from[%d] admits more than the namespace's Prometheus (pods labelled %v) to the admin port %d", i, j, prometheusLabels, admin)
				continue
			}
			adminAdmitted = true
		}
	}
	if !adminAdmitted {
		t.Errorf("NetworkPolicy: no rule admits the namespace's Prometheus (pods labelled %v) to the admin port %d (server.listen %q): scrapes would fail", prometheusLabels, admin, defaults.Server.Listen)
	}
	if !webhooksAdmitted {
		t.Errorf("NetworkPolicy: no rule admits anyone to the webhooks port (%q, or %d) the Deployment tells to declare: the ingress could not reach it", "webhooks", webhooksPort)
	}
	if !selfserviceAdmitted {
		t.Errorf("NetworkPolicy: no rule admits anyone to the self-service port (%q, or %d) the Deployment tells to declare: the ingress could not reach it", "selfservice", selfservicePort)
	}
	for _, p := range c.Ports {
		if !admitted[p.ContainerPort] {
			t.Errorf("NetworkPolicy: the container's port %s (%d) is admitted from nowhere", p.Name, p.ContainerPort)
		}
	}
}

// secretFiles returns the files the pod sees from secret volumes (absolute
// path → content), from the example Secret.
func secretFiles(t *testing.T, mounts map[string]volume, secret object) map[string]string {
	t.Helper()
	files := map[string]string{}
	for dir, v := range mounts {
		if v.Secret == nil {
			continue
		}
		if v.Secret.SecretName != secret.Metadata.Name {
			t.Errorf("secret volume at %s names %q; the example Secret is %q", dir, v.Secret.SecretName, secret.Metadata.Name)
		}
		for _, it := range v.Secret.Items {
			content, ok := secret.StringData[it.Key]
			if !ok {
				t.Errorf("secret volume at %s: key %q is not in the example Secret", dir, it.Key)
			}
			files[path.Join(dir, it.Path)] = content
		}
	}
	return files
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestKubernetesTools checks the one-off pods that run state check and
// state reset against the Deployment's volume while it is scaled to zero.
func TestKubernetesTools(t *testing.T) {
	base := kustomize(t, "kubernetes/base")
	baseDep := decodeSpec[deploymentSpec](t, only(t, base, "Deployment"))
	claim := only(t, base, "PersistentVolumeClaim").Metadata.Name
	df := readDockerfile(t)
	for file, sub := range map[string]string{"state-check.yaml": "check", "state-reset.yaml": "reset"} {
		o := readDocs[object](t, filepath.Join("kubernetes/tools", file))[0]
		pod := decodeSpec[podSpec](t, o)
		if o.Kind != "Pod" || len(pod.Containers) != 1 {
			t.Fatalf("%s: kind %q with %d containers; want a Pod with one", file, o.Kind, len(pod.Containers))
		}
		if subset(baseDep.Selector.MatchLabels, o.Metadata.Labels) {
			t.Errorf("%s: labels %v match the Deployment's selector; the Service and the PDB would count it", file, o.Metadata.Labels)
		}
		c := pod.Containers[0]
		want := []string{"state", sub}
		if len(c.Args) < 2 || !slices.Equal(c.Args[:2], want) {
			t.Errorf("%s: args %q; want %q ...", file, c.Args, want)
		}
		if i := slices.Index(c.Args, "-path"); i < 0 || i+1 >= len(c.Args) || c.Args[i+1] != defaults.State.Path {
			t.Errorf("%s: args %q; want -path %s (no configuration, no secrets needed)", file, c.Args, defaults.State.Path)
		}
		if sub == "reset" && !slices.Contains(c.Args, "-yes") {
			t.Errorf("%s: args %q; want -yes (a pod cannot answer the question)", file, c.Args)
		}
		var mounted bool
		for _, m := range c.VolumeMounts {
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim && m.MountPath == stateDir {
					mounted = true
				}
			}
		}
		if !mounted {
			t.Errorf("%s: claim %q is not mounted at %s", file, claim, stateDir)
		}
		if user, _, _ := strings.Cut(df.user, ":"); pod.SecurityContext.RunAsUser == nil || strconv.Itoa(*pod.SecurityContext.RunAsUser) != user ||
			!isTrue(pod.SecurityContext.RunAsNonRoot) || pod.SecurityContext.SeccompProfile.Type != "RuntimeDefault" ||
			!isTrue(c.SecurityContext.ReadOnlyRootFilesystem) || !slices.Equal(c.SecurityContext.Capabilities.Drop, []string{"ALL"}) ||
			c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
			t.Errorf("%s: runAsUser %s, runAsNonRoot %s, seccomp %q, readOnlyRootFilesystem %s, drop %v, allowPrivilegeEscalation %s; want the Deployment's (the namespace enforces the restricted standard)",
				file, show(pod.SecurityContext.RunAsUser), show(pod.SecurityContext.RunAsNonRoot), pod.SecurityContext.SeccompProfile.Type,
				show(c.SecurityContext.ReadOnlyRootFilesystem), c.SecurityContext.Capabilities.Drop, show(c.SecurityContext.AllowPrivilegeEscalation))
		}
		if c.Image != baseDep.Template.Spec.Containers[0].Image {
			t.Errorf("%s: image %q; want the Deployment's %q", file, c.Image, baseDep.Template.Spec.Containers[0].Image)
		}
	}
}

// kustomize renders the kustomization in dir as kubectl apply -k would, by
// kind then name, for what the ones here use: resources (files, and
// directories with a kustomization of their own), the namespace, and
// patches (a file or inline) applied as strategic merges or deletions.
func kustomize(t *testing.T, dir string) map[string]map[string]object {
	t.Helper()
	var objs []object
	for _, d := range kustomizeDocs(t, dir) {
		data, err := yaml.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, decodeDocs[object](t, dir, data)...)
	}
	return byKind(t, dir, objs)
}

func kustomizeDocs(t *testing.T, dir string) []map[string]any {
	t.Helper()
	k := readDocs[object](t, filepath.Join(dir, "kustomization.yaml"))[0]
	var docs []map[string]any
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			docs = append(docs, kustomizeDocs(t, p)...)
			continue
		}
		docs = append(docs, readDocs[map[string]any](t, p)...)
	}
	for _, p := range k.Patches {
		var patches []map[string]any
		if p.Path != "" {
			patches = readDocs[map[string]any](t, filepath.Join(dir, p.Path))
		} else {
			patches = decodeDocs[map[string]any](t, dir+" inline patch", []byte(p.Patch))
		}
		for _, patch := range patches {
			kind, name := kindName(patch)
			i := slices.IndexFunc(docs, func(d map[string]any) bool {
				k, n := kindName(d)
				return k == kind && n == name
			})
			if i < 0 {
				t.Errorf("%s: a patch of %s %q, which no resource defines", dir, kind, name)
				continue
			}
			if patch["$patch"] == "delete" {
				docs = slices.Delete(docs, i, i+1)
				continue
			}
			docs[i] = strategicMerge(docs[i], patch).(map[string]any)
		}
	}
	if k.Namespace != "" {
		for _, d := range docs {
			if md, ok := d["metadata"].(map[string]any); ok && d["kind"] != "Namespace" {
				md["namespace"] = k.Namespace
			}
		}
	}
	return docs
}

func kindName(d map[string]any) (kind, name string) {
	md, _ := d["metadata"].(map[string]any)
	kind, _ = d["kind"].(string)
	name, _ = md["name"].(string)
	return kind, name
}

// strategicMerge merges patch into dst as a strategic merge patch does for
// the fields the patches here touch: maps merge, null deletes a field,
// lists of named items (containers, volumes, env) merge by name, and
// anything else is replaced.
func strategicMerge(dst, patch any) any {
	switch p := patch.(type) {
	case map[string]any:
		d, ok := dst.(map[string]any)
		if !ok {
			d = map[string]any{}
		}
		out := maps.Clone(d)
		for k, v := range p {
			if v == nil {
				delete(out, k)
				continue
			}
			out[k] = strategicMerge(d[k], v)
		}
		return out
	case []any:
		d, ok := dst.([]any)
		if !ok || !named(d) || !named(p) {
			return patch
		}
		out := slices.Clone(d)
		for _, item := range p {
			name := item.(map[string]any)["name"]
			i := slices.IndexFunc(out, func(o any) bool { return o.(map[string]any)["name"] == name })
			if i < 0 {
				out = append(out, item)
				continue
			}
			out[i] = strategicMerge(out[i], item)
		}
		return out
	}
	return patch
}

// named reports whether every item of a list is a map with a name.
func named(list []any) bool {
	for _, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return false
		}
		if _, ok := m["name"].(string); !ok {
			return false
		}
	}
	return len(list) > 0
}

// byKind indexes objects by kind then name; where names their source.
func byKind(t *testing.T, where string, objs []object) map[string]map[string]object {
	t.Helper()
	out := map[string]map[string]object{}
	for _, o := range objs {
		if o.Kind == "" || o.APIVersion == "" {
			t.Errorf("%s: a document without kind or apiVersion", where)
			continue
		}
		if out[o.Kind] == nil {
			out[o.Kind] = map[string]object{}
		}
		if _, dup := out[o.Kind][o.Metadata.Name]; dup {
			t.Errorf("%s: second %s %q", where, o.Kind, o.Metadata.Name)
		}
		out[o.Kind][o.Metadata.Name] = o
	}
	return out
}
