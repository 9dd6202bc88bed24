package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
)

type composeFile struct {
	Services map[string]struct {
		Build           any               `yaml:"build"`
		Image           string            `yaml:"image"`
		Command         []string          `yaml:"command"`
		User            string            `yaml:"user"`
		ReadOnly        bool              `yaml:"read_only"`
		CapDrop         []string          `yaml:"cap_drop"`
		SecurityOpt     []string          `yaml:"security_opt"`
		StopGracePeriod string            `yaml:"stop_grace_period"`
		Environment     map[string]string `yaml:"environment"`
		Secrets         []string          `yaml:"secrets"`
		Volumes         []string          `yaml:"volumes"`
		Ports           []string          `yaml:"ports"`
	} `yaml:"services"`
	Secrets map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes map[string]any `yaml:"volumes"`
}

func TestCompose(t *testing.T) {
	docs := readDocs[composeFile](t, "compose.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose.yaml: %d documents; want 1", len(docs))
	}
	cf := docs[0]
	svc, ok := cf.Services["calpresence"]
	if !ok {
		t.Fatal("compose.yaml: no service calpresence")
	}
	df := readDockerfile(t)
	if svc.User != df.user {
		t.Errorf("user = %q; want the image's USER %q", svc.User, df.user)
	}
	if sub, cfgPath := commandLine(svc.Command); sub != "run" || cfgPath != config.DefaultPath {
		t.Errorf("command = %q; want run reading %q", svc.Command, config.DefaultPath)
	}
	if !svc.ReadOnly || !slices.Contains(svc.CapDrop, "ALL") || !slices.Contains(svc.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("read_only %v, cap_drop %v, security_opt %v; want true, [ALL], [no-new-privileges:true]", svc.ReadOnly, svc.CapDrop, svc.SecurityOpt)
	}
	if d, err := time.ParseDuration(svc.StopGracePeriod); err != nil || d <= shutdownMax {
		t.Errorf("stop_grace_period = %q; want above server.shutdown_timeout %v (err %v)", svc.StopGracePeriod, shutdownMax, err)
	}
	port := listenPort(t)
	var published bool
	for _, p := range svc.Ports {
		parts := strings.Split(p, ":")
		published = published || parts[len(parts)-1] == strconv.Itoa(port)
	}
	if !published {
		t.Errorf("ports = %q; want the container's port %d published", svc.Ports, port)
	}
	var configMount, stateMount string
	for _, v := range svc.Volumes {
		f := strings.Split(v, ":")
		if len(f) < 2 {
			t.Errorf("volume %q: want SOURCE:TARGET[:ro]", v)
			continue
		}
		switch f[1] {
		case config.DefaultPath:
			configMount = v
			if len(f) < 3 || f[2] != "ro" {
				t.Errorf("volume %q: mount the configuration read-only", v)
			}
		case stateDir:
			stateMount = v
			if _, ok := cf.Volumes[f[0]]; !ok {
				t.Errorf("volume %q: want a named volume for the state (declared under volumes:)", v)
			}
		}
	}
	if configMount == "" || stateMount == "" {
		t.Errorf("volumes = %q; want the configuration at %s and the state at %s", svc.Volumes, config.DefaultPath, stateDir)
	}

	// The compose file runs examples/config.yaml (copied next to it): its
	// variables come from environment:, its secret file from secrets:.
	example, err := os.ReadFile("../examples/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for k := range svc.Environment {
		env[k] = "x-" + strings.ToLower(k)
	}
	files := map[string]string{}
	for _, s := range svc.Secrets {
		if _, ok := cf.Secrets[s]; !ok {
			t.Errorf("secret %q is not declared under secrets:", s)
		}
		files["/run/secrets/"+s] = "compose-secret"
	}
	cfg, err := loadAsDeployed(t, string(example), env, files)
	if err != nil {
		t.Fatalf("examples/config.yaml under compose.yaml's environment and secrets: %v", err)
	}
	if cfg.Graph.ClientSecret != "compose-secret" {
		t.Errorf("client secret = %q; want the compose secret's content", string(cfg.Graph.ClientSecret))
	}
	if filepath.Dir(cfg.State.Path) != stateDir {
		t.Errorf("examples/config.yaml state.path = %q; want it in %s, the volume", cfg.State.Path, stateDir)
	}
	checkListen(t, "examples/config.yaml", cfg, port)
}
