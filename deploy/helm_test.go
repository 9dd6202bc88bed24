package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

const chart = "helm/calpresence"

// helmTool returns the path of helm. Debian does not package it: .ci/run
// builds it from its Go module at a pinned version (go install
// helm.sh/helm/v3/cmd/helm@v…, into .ci/bin). Without it the test skips
// outside CI and fails in CI, as testutil.Tool does for Debian's tools.
func helmTool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("helm")
	if err == nil {
		return path
	}
	if ci := os.Getenv("CI"); ci != "" {
		t.Fatalf("helm not found in PATH with CI=%q set: .ci/run builds it with go install helm.sh/helm/v3/cmd/helm into .ci/bin and puts that on PATH", ci)
	}
	t.Skip("helm not found in PATH: skipping (.ci/run builds it with go install helm.sh/helm/v3/cmd/helm; CI does)")
	return ""
}

// runHelm runs helm with args and returns its standard output. Helm's
// cache, configuration and data go to a temporary directory, so the test
// neither reads nor writes the user's.
func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helmTool(t), args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &helmError{args, err, stderr.String() + stdout.String()}
	}
	return stdout.Bytes(), nil
}

type helmError struct {
	args   []string
	err    error
	output string
}

func (e *helmError) Error() string {
	return "helm " + strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + e.output
}

// TestHelmChart checks the chart in helm/calpresence: helm lint passes, and
// what helm template renders, for the default values and for
// values-postgres-replicas.yaml, passes the checks of the kustomize
// manifests it mirrors (checkOneReplica, checkReplicas: the binary's
// defaults) and matches those manifests where they set the same thing
// (security contexts, probes, resources, volumes, the configuration, the
// NetworkPolicy), with the same Secret.
func TestHelmChart(t *testing.T) {
	helmTool(t)
	for _, tt := range []struct {
		name      string
		values    []string
		kustomize string
		check     func(*testing.T, map[string]map[string]object, object)
	}{
		{"default", nil, "kubernetes/base", checkOneReplica},
		{"postgres-replicas", []string{"-f", filepath.Join(chart, "values-postgres-replicas.yaml")}, "kubernetes/postgres-replicas", checkReplicas},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := runHelm(t, append([]string{"lint", "--strict", chart}, tt.values...)...); err != nil {
				t.Errorf("%v", err)
			}
			objs := helmTemplate(t, tt.values...)
			tt.check(t, objs, readDocs[object](t, filepath.Join(tt.kustomize, "secret.example.yaml"))[0])
			compareRenders(t, kustomize(t, tt.kustomize), objs)
		})
	}

	// Values that cannot run are refused at render time.
	for set, want := range map[string]string{
		"replicas=2":              "the state file takes one process",
		"state.driver=sqlite":     `state.driver "sqlite"`,
		"secrets.existingSecret=": "secrets.existingSecret",
	} {
		_, err := runHelm(t, "template", "calpresence", chart, "--set", set)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("helm template --set %s: %v; want a refusal saying %q", set, err, want)
		}
	}
}

// helmTemplate renders the chart as release calpresence in namespace
// calpresence (so that names match the kustomize manifests'), by kind then
// name.
func helmTemplate(t *testing.T, values ...string) map[string]map[string]object {
	t.Helper()
	out, err := runHelm(t, append([]string{"template", "calpresence", chart, "--namespace", "calpresence"}, values...)...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return byKind(t, "helm template", decodeDocs[object](t, "helm template", out))
}

// compareRenders compares what the chart renders (h) with the kustomize
// manifests (k) where both must say the same.
func compareRenders(t *testing.T, k, h map[string]map[string]object) {
	t.Helper()
	kp, hp := podTemplateSpec(t, k), podTemplateSpec(t, h)
	for _, key := range []string{"automountServiceAccountToken", "terminationGracePeriodSeconds", "securityContext", "volumes"} {
		if diff := cmp.Diff(kp[key], hp[key]); diff != "" {
			t.Errorf("pod %s differs between the kustomize manifests and the chart (-kustomize +helm):\n%s", key, diff)
		}
	}
	kc, hc := firstContainer(kp), firstContainer(hp)
	for _, key := range []string{"image", "args", "ports", "env", "resources", "livenessProbe", "readinessProbe", "securityContext", "volumeMounts"} {
		if diff := cmp.Diff(kc[key], hc[key]); diff != "" {
			t.Errorf("container %s differs between the kustomize manifests and the chart (-kustomize +helm):\n%s", key, diff)
		}
	}
	if diff := cmp.Diff(configOf(t, k), configOf(t, h)); diff != "" {
		t.Errorf("the configuration differs between the kustomize manifests and the chart (-kustomize +helm):\n%s", diff)
	}
	for _, kind := range []string{"NetworkPolicy", "PersistentVolumeClaim", "PodDisruptionBudget"} {
		if len(k[kind]) != len(h[kind]) {
			t.Errorf("%d objects of kind %s in the kustomize manifests, %d in the chart", len(k[kind]), kind, len(h[kind]))
			continue
		}
		if len(k[kind]) == 0 {
			continue
		}
		ks, hs := specMap(t, only(t, k, kind)), specMap(t, only(t, h, kind))
		for _, key := range []string{"ingress", "policyTypes", "accessModes", "resources", "minAvailable"} {
			if diff := cmp.Diff(ks[key], hs[key]); diff != "" {
				t.Errorf("%s %s differs between the kustomize manifests and the chart (-kustomize +helm):\n%s", kind, key, diff)
			}
		}
	}
}

func specMap(t *testing.T, o object) map[string]any {
	t.Helper()
	return decodeSpec[map[string]any](t, o)
}

func podTemplateSpec(t *testing.T, objs map[string]map[string]object) map[string]any {
	t.Helper()
	tmpl, _ := specMap(t, only(t, objs, "Deployment"))["template"].(map[string]any)
	spec, _ := tmpl["spec"].(map[string]any)
	return spec
}

func firstContainer(pod map[string]any) map[string]any {
	cs, _ := pod["containers"].([]any)
	if len(cs) == 0 {
		return nil
	}
	c, _ := cs[0].(map[string]any)
	return c
}

// configOf returns the configuration in the ConfigMap as YAML values, so
// that the same settings written in another order or style compare equal.
func configOf(t *testing.T, objs map[string]map[string]object) map[string]any {
	t.Helper()
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(only(t, objs, "ConfigMap").Data[configFile]), &cfg); err != nil {
		t.Fatalf("ConfigMap %s: %v", configFile, err)
	}
	return cfg
}

// TestHelmSelfservice: the chart declares the self-service port (the
// binary's default selfservice.listen) on the pod and the Service when the
// configuration sets selfservice.url, or with selfservice.enabled, and not
// otherwise; the NetworkPolicy admits the ingress controller to it. A
// selfservice.listen on another port than selfservice.port is refused.
func TestHelmSelfservice(t *testing.T) {
	helmTool(t)
	want := portOf(t, "selfservice.listen", defaults.Selfservice.Listen)
	for _, tt := range []struct {
		name    string
		values  []string
		exposed bool
	}{
		{"default", nil, false},
		{"config", []string{"--set", "config.selfservice.url=https://presence.contoso.com"}, true},
		{"enabled", []string{"--set", "selfservice.enabled=true"}, true},
		{"postgres-replicas", []string{"-f", filepath.Join(chart, "values-postgres-replicas.yaml"), "--set", "config.selfservice.url=https://presence.contoso.com"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			objs := helmTemplate(t, tt.values...)
			dep := decodeSpec[deploymentSpec](t, only(t, objs, "Deployment"))
			c := dep.Template.Spec.Containers[0]
			got := resolvePort(c, "selfservice")
			switch {
			case tt.exposed && got != want:
				t.Errorf("container port selfservice = %d; want %d (selfservice.listen %q)", got, want, defaults.Selfservice.Listen)
			case !tt.exposed && got != 0:
				t.Errorf("container port selfservice = %d; want none (selfservice not configured)", got)
			}
			svc := decodeSpec[struct {
				Ports []struct {
					Name       string `yaml:"name"`
					Port       int    `yaml:"port"`
					TargetPort string `yaml:"targetPort"`
				} `yaml:"ports"`
			}](t, only(t, objs, "Service"))
			var onService bool
			for _, p := range svc.Ports {
				if p.Name == "selfservice" {
					onService = true
					if p.Port != want || resolvePort(c, p.TargetPort) != want {
						t.Errorf("Service port selfservice = %d → %q; want %d → the container's %d", p.Port, p.TargetPort, want, want)
					}
				}
			}
			if onService != tt.exposed {
				t.Errorf("Service has port selfservice: %v; want %v", onService, tt.exposed)
			}
			checkNetworkPolicy(t, objs, c, dep.Template.Metadata.Labels)
		})
	}
	_, err := runHelm(t, "template", "calpresence", chart, "--set", "config.selfservice.url=https://presence.contoso.com", "--set", "config.selfservice.listen=:9000")
	if err == nil || !strings.Contains(err.Error(), `selfservice.port: 8082 is not the port of config.selfservice.listen ":9000"`) {
		t.Errorf("helm template with selfservice.listen :9000: %v; want a refusal naming selfservice.port", err)
	}
}
