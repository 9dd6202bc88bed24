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

// manifests reads every YAML file in dir, by kind then name.
func manifests(t *testing.T, dir string) map[string]map[string]object {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no manifests (%v)", dir, err)
	}
	out := map[string]map[string]object{}
	for _, f := range files {
		for _, o := range readDocs[object](t, f) {
			if o.Kind == "" || o.APIVersion == "" {
				t.Errorf("%s: a document without kind or apiVersion", f)
				continue
			}
			if out[o.Kind] == nil {
				out[o.Kind] = map[string]object{}
			}
			if _, dup := out[o.Kind][o.Metadata.Name]; dup {
				t.Errorf("%s: second %s %q in %s", f, o.Kind, o.Metadata.Name, dir)
			}
			out[o.Kind][o.Metadata.Name] = o
		}
	}
	return out
}

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

func TestKubernetesBase(t *testing.T) {
	objs := manifests(t, "kubernetes/base")
	dep := only(t, objs, "Deployment")
	spec := decodeSpec[deploymentSpec](t, dep)
	pod := spec.Template.Spec
	port := listenPort(t)
	df := readDockerfile(t)

	// One replica, replaced rather than rolled: the bbolt file is locked.
	if spec.Replicas == nil || *spec.Replicas != 1 || spec.Strategy.Type != "Recreate" {
		t.Errorf("replicas %s, strategy %q; want 1 and Recreate (the bbolt state file takes one process)", show(spec.Replicas), spec.Strategy.Type)
	}
	if !subset(spec.Selector.MatchLabels, spec.Template.Metadata.Labels) {
		t.Errorf("selector %v does not match the pod labels %v", spec.Selector.MatchLabels, spec.Template.Metadata.Labels)
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || float64(*g) <= shutdownMax.Seconds() {
		t.Errorf("terminationGracePeriodSeconds = %s; want above server.shutdown_timeout %v", show(g), shutdownMax)
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

	// Ports and probes agree with server.listen.
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

	// Volumes: the configuration where the CLI looks, the state where
	// state.path says, on the claim.
	vols := map[string]volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]volume{}
	for _, m := range c.VolumeMounts {
		v, ok := vols[m.Name]
		if !ok {
			t.Errorf("volumeMount %q: no such volume", m.Name)
		}
		if m.SubPath != "" {
			t.Errorf("volumeMount %q uses subPath: updates to it would never reach the pod", m.Name)
		}
		mounts[m.MountPath] = v
		if (v.ConfigMap != nil || v.Secret != nil) && !m.ReadOnly {
			t.Errorf("volumeMount %q at %s: want readOnly", m.Name, m.MountPath)
		}
	}
	cmVol := mounts[configDir]
	if cmVol.ConfigMap == nil {
		t.Fatalf("no ConfigMap mounted at %s, where calpresence reads %s", configDir, config.DefaultPath)
	}
	cm, ok := objs["ConfigMap"][cmVol.ConfigMap.Name]
	if !ok {
		t.Fatalf("ConfigMap %q is mounted but not in the manifests", cmVol.ConfigMap.Name)
	}
	cfgText, ok := cm.Data[configFile]
	if !ok {
		t.Fatalf("ConfigMap %q has no key %s (mounted as %s)", cm.Metadata.Name, configFile, config.DefaultPath)
	}
	stVol := mounts[stateDir]
	if stVol.PersistentVolumeClaim == nil {
		t.Fatalf("no PersistentVolumeClaim mounted at %s (the directory of state.path)", stateDir)
	}
	pvc, ok := objs["PersistentVolumeClaim"][stVol.PersistentVolumeClaim.ClaimName]
	if !ok {
		t.Fatalf("claim %q is mounted but not in the manifests", stVol.PersistentVolumeClaim.ClaimName)
	}
	if am := decodeSpec[struct {
		AccessModes []string `yaml:"accessModes"`
	}](t, pvc).AccessModes; !slices.Equal(am, []string{"ReadWriteOnce"}) {
		t.Errorf("claim accessModes = %v; want [ReadWriteOnce]", am)
	}

	// The Secret example provides every key the pod takes from it.
	secret := readDocs[object](t, "kubernetes/base/secret.example.yaml")[0]
	if secret.Kind != "Secret" {
		t.Fatalf("secret.example.yaml: kind %q", secret.Kind)
	}
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
	if cfg.State.Path != defaults.State.Path {
		t.Errorf("ConfigMap state.path = %q; want %q, on the claim", cfg.State.Path, defaults.State.Path)
	}
	if g := pod.TerminationGracePeriodSeconds; g != nil && float64(*g) <= cfg.Server.ShutdownTimeout.Seconds() {
		t.Errorf("terminationGracePeriodSeconds %d is not above the ConfigMap's shutdown_timeout %v", *g, cfg.Server.ShutdownTimeout)
	}
	if cfg.Graph.DryRun {
		t.Error("the ConfigMap's configuration is a dry run; the deployment example should call Graph")
	}
	checkNetworkPolicy(t, objs, c, spec.Template.Metadata.Labels)
	if want := secret.StringData["graph-client-secret"]; want == "" || string(cfg.Graph.ClientSecret) != want {
		t.Errorf("client secret = %q; want the Secret's graph-client-secret, through the mounted file", string(cfg.Graph.ClientSecret))
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
		_, p, _ := net.SplitHostPort(config.DefaultWebhooksListen)
		n, _ := strconv.Atoi(p)
		return n
	}()
	var adminAdmitted, webhooksAdmitted bool
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

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestKubernetesPostgresReplicas checks the two-replica overlay as
// kustomize applies it to the base: two replicas rolled one at a time, a
// PodDisruptionBudget over the pods, no volume claim, the base's probes
// (a standby is ready), and a configuration that loads in the pod with the
// state in PostgreSQL at the DSN the Secret mounts.
func TestKubernetesPostgresReplicas(t *testing.T) {
	const dir = "kubernetes/postgres-replicas"
	base := manifests(t, "kubernetes/base")
	baseDep := decodeSpec[deploymentSpec](t, only(t, base, "Deployment"))
	baseC := baseDep.Template.Spec.Containers[0]
	objs := manifests(t, dir)

	// The kustomization: the base, the PDB, the patches, the claim deleted.
	k := readDocs[object](t, filepath.Join(dir, "kustomization.yaml"))[0]
	if !slices.Contains(k.Resources, "../base") || !slices.Contains(k.Resources, "pdb.yaml") {
		t.Errorf("resources = %q; want ../base and pdb.yaml", k.Resources)
	}
	if p := patchPaths(k); !slices.Contains(p, "deployment.yaml") || !slices.Contains(p, "configmap.yaml") {
		t.Errorf("patches = %q; want deployment.yaml and configmap.yaml", p)
	}
	claim := only(t, base, "PersistentVolumeClaim").Metadata.Name
	var claimDeleted bool
	for _, p := range k.Patches {
		claimDeleted = claimDeleted || (strings.Contains(p.Patch, "$patch: delete") &&
			strings.Contains(p.Patch, "kind: PersistentVolumeClaim") && strings.Contains(p.Patch, "name: "+claim))
	}
	if !claimDeleted {
		t.Errorf("no patch deletes the base's claim %q: two replicas share no ReadWriteOnce volume", claim)
	}
	if len(objs["PersistentVolumeClaim"]) > 0 {
		t.Errorf("the overlay has a PersistentVolumeClaim; the state is in PostgreSQL")
	}

	// The Deployment: the base's, with two replicas rolled one at a time.
	dep := only(t, objs, "Deployment")
	if dep.Metadata.Name != only(t, base, "Deployment").Metadata.Name {
		t.Errorf("Deployment patch %q does not name the base's Deployment", dep.Metadata.Name)
	}
	spec := decodeSpec[deploymentSpec](t, dep)
	if spec.Replicas == nil || *spec.Replicas != 2 || spec.Strategy.Type != "RollingUpdate" {
		t.Errorf("replicas %s, strategy %q; want 2 and RollingUpdate", show(spec.Replicas), spec.Strategy.Type)
	}
	if ru := spec.Strategy.RollingUpdate; ru == nil || fmt.Sprint(ru.MaxUnavailable) != "0" || fmt.Sprint(ru.MaxSurge) != "1" {
		t.Errorf("rollingUpdate = %+v; want maxUnavailable 0 and maxSurge 1 (a new pod is ready before an old one stops)", ru)
	}
	if len(spec.Template.Spec.Containers) > 0 {
		t.Errorf("the Deployment patch sets containers; keep the base's (its probes: /readyz, which a standby passes, and /healthz)")
	}
	if r := baseC.ReadinessProbe; r == nil || r.HTTPGet == nil || r.HTTPGet.Path != "/readyz" {
		t.Errorf("the base's readinessProbe is %+v; want /readyz (200 on a standby that reaches the database)", r)
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
	if !subset(pdbSpec.Selector.MatchLabels, baseDep.Template.Metadata.Labels) || !subset(baseDep.Selector.MatchLabels, pdbSpec.Selector.MatchLabels) {
		t.Errorf("PodDisruptionBudget selector %v; want the Deployment's pods (labels %v, selector %v)", pdbSpec.Selector.MatchLabels, baseDep.Template.Metadata.Labels, baseDep.Selector.MatchLabels)
	}

	// The volumes as kustomize merges them (by name): the overlay's
	// replace the base's, mounted where the base's container mounts them.
	vols := map[string]volume{}
	for _, v := range baseDep.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, v := range spec.Template.Spec.Volumes {
		if _, ok := vols[v.Name]; !ok {
			t.Errorf("volume %q is not in the base, whose container would not mount it", v.Name)
		}
		vols[v.Name] = v
	}
	mounts := map[string]volume{}
	for _, m := range baseC.VolumeMounts {
		mounts[m.MountPath] = vols[m.Name]
	}
	for p, v := range mounts {
		if v.PersistentVolumeClaim != nil {
			t.Errorf("%s is on claim %q: two replicas share no ReadWriteOnce volume", p, v.PersistentVolumeClaim.ClaimName)
		}
	}
	if v := mounts[stateDir]; v.EmptyDir == nil {
		t.Errorf("%s: want an emptyDir in place of the claim (nothing is written there with driver postgres)", stateDir)
	}

	// The configuration: the base's pod environment, the overlay's Secret
	// (the base's keys and postgres-dsn) through the overlay's volumes.
	secret := readDocs[object](t, filepath.Join(dir, "secret.example.yaml"))[0]
	if secret.Kind != "Secret" || secret.Metadata.Name != "calpresence" {
		t.Fatalf("secret.example.yaml: %s %q; want the Secret calpresence", secret.Kind, secret.Metadata.Name)
	}
	baseSecret := readDocs[object](t, "kubernetes/base/secret.example.yaml")[0]
	for key := range baseSecret.StringData {
		if _, ok := secret.StringData[key]; !ok {
			t.Errorf("secret.example.yaml lacks the base's key %q", key)
		}
	}
	files := secretFiles(t, mounts, secret)
	dsn := secret.StringData["postgres-dsn"]
	const dsnPath = "/run/secrets/calpresence/postgres-dsn"
	if got, ok := files[dsnPath]; !ok || got != dsn {
		t.Errorf("the overlay mounts %v; want the Secret's postgres-dsn at %s", keys(files), dsnPath)
	}
	env := map[string]string{}
	for _, e := range baseC.Env {
		env[e.Name] = "x"
	}
	cm := only(t, objs, "ConfigMap")
	if cmVol := mounts[configDir]; cmVol.ConfigMap == nil || cmVol.ConfigMap.Name != cm.Metadata.Name {
		t.Errorf("ConfigMap %q is not the one the pod mounts at %s", cm.Metadata.Name, configDir)
	}
	cfg, err := loadAsDeployed(t, cm.Data[configFile], env, files)
	if err != nil {
		t.Fatalf("the overlay's ConfigMap does not load in the pod's environment: %v", err)
	}
	if cfg.State.Driver != config.DriverPostgres || string(cfg.State.DSN) != dsn || cfg.State.Path != "" {
		t.Errorf("state: driver %q, dsn %v, path %q; want postgres, the Secret's postgres-dsn (through state.dsn_file), no path", cfg.State.Driver, cfg.State.DSN, cfg.State.Path)
	}
	if !strings.Contains(cm.Data[configFile], "dsn_file: "+dsnPath) {
		t.Errorf("the overlay's configuration does not read the DSN from %s (state.dsn_file)", dsnPath)
	}
	checkListen(t, "postgres-replicas ConfigMap", cfg, listenPort(t))
	if g := baseDep.Template.Spec.TerminationGracePeriodSeconds; g == nil || float64(*g) <= cfg.Server.ShutdownTimeout.Seconds() {
		t.Errorf("terminationGracePeriodSeconds %s is not above the overlay's shutdown_timeout %v", show(g), cfg.Server.ShutdownTimeout)
	}
	if cfg.Graph.DryRun {
		t.Error("the overlay's configuration is a dry run: a dry run keeps its state in memory and elects no leader")
	}

	// The base's NetworkPolicy applies to the overlay's pods as they are
	// after the patch: kept, and still selecting them.
	for _, p := range k.Patches {
		if strings.Contains(p.Patch, "$patch: delete") && strings.Contains(p.Patch, "kind: NetworkPolicy") {
			t.Errorf("a patch deletes the base's NetworkPolicy: the admin port would be open to the cluster")
		}
	}
	labels := map[string]string{}
	maps.Copy(labels, baseDep.Template.Metadata.Labels)
	maps.Copy(labels, spec.Template.Metadata.Labels)
	checkNetworkPolicy(t, base, baseC, labels)
}

// TestKubernetesTools checks the one-off pods that run state check and
// state reset against the Deployment's volume while it is scaled to zero.
func TestKubernetesTools(t *testing.T) {
	base := manifests(t, "kubernetes/base")
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
