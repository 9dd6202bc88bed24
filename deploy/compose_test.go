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
		Hostname        string            `yaml:"hostname"`
		DependsOn       map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
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

// TestComposeReplicas checks compose-replicas.yaml: two calpresence
// replicas, each hardened and published like compose.yaml's, and a
// PostgreSQL they wait for; examples/config.yaml, with its state section
// switched to postgres as the file's header says, loads under their
// environment and secrets with the DSN from the postgres-dsn secret.
func TestComposeReplicas(t *testing.T) {
	docs := readDocs[composeFile](t, "compose-replicas.yaml")
	if len(docs) != 1 {
		t.Fatalf("compose-replicas.yaml: %d documents; want 1", len(docs))
	}
	cf := docs[0]
	df := readDockerfile(t)
	port := strconv.Itoa(listenPort(t))
	pg, ok := cf.Services["postgres"]
	if !ok {
		t.Fatal("compose-replicas.yaml: no service postgres")
	}
	// idle_session_timeout, which the leader election sets, is new in 14.
	_, tag, _ := strings.Cut(pg.Image, ":")
	major, _ := strconv.Atoi(strings.FieldsFunc(tag, func(r rune) bool { return r == '.' || r == '-' })[0])
	if !strings.HasPrefix(pg.Image, "postgres:") || major < 14 {
		t.Errorf("postgres image = %q; want postgres:14 or later", pg.Image)
	}

	replicas := []string{"calpresence-a", "calpresence-b"}
	hostPorts := map[string]bool{}
	hostnames := map[string]bool{}
	var svcEnv map[string]string
	var svcSecrets []string
	for _, name := range replicas {
		svc, ok := cf.Services[name]
		if !ok {
			t.Fatalf("compose-replicas.yaml: no service %s", name)
		}
		if svc.User != df.user {
			t.Errorf("%s: user = %q; want the image's USER %q", name, svc.User, df.user)
		}
		if sub, cfgPath := commandLine(svc.Command); sub != "run" || cfgPath != config.DefaultPath {
			t.Errorf("%s: command = %q; want run reading %q", name, svc.Command, config.DefaultPath)
		}
		if !svc.ReadOnly || !slices.Contains(svc.CapDrop, "ALL") || !slices.Contains(svc.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: read_only %v, cap_drop %v, security_opt %v; want true, [ALL], [no-new-privileges:true]", name, svc.ReadOnly, svc.CapDrop, svc.SecurityOpt)
		}
		if d, err := time.ParseDuration(svc.StopGracePeriod); err != nil || d <= shutdownMax {
			t.Errorf("%s: stop_grace_period = %q; want above server.shutdown_timeout %v (err %v)", name, svc.StopGracePeriod, shutdownMax, err)
		}
		if svc.DependsOn["postgres"].Condition != "service_healthy" {
			t.Errorf("%s: depends_on = %v; want postgres: service_healthy", name, svc.DependsOn)
		}
		if svc.Hostname == "" || hostnames[svc.Hostname] {
			t.Errorf("%s: hostname %q; want one of its own (it names the replica in the election)", name, svc.Hostname)
		}
		hostnames[svc.Hostname] = true
		var published bool
		for _, p := range svc.Ports {
			parts := strings.Split(p, ":")
			if parts[len(parts)-1] != port {
				continue
			}
			published = true
			host := strings.Join(parts[:len(parts)-1], ":")
			if hostPorts[host] {
				t.Errorf("%s: port %q is published by the other replica too", name, p)
			}
			hostPorts[host] = true
		}
		if !published {
			t.Errorf("%s: ports = %q; want the container's port %s published", name, svc.Ports, port)
		}
		var configMounted bool
		for _, v := range svc.Volumes {
			f := strings.Split(v, ":")
			if len(f) >= 3 && f[1] == config.DefaultPath && f[2] == "ro" {
				configMounted = true
			}
		}
		if !configMounted {
			t.Errorf("%s: volumes = %q; want the configuration read-only at %s", name, svc.Volumes, config.DefaultPath)
		}
		for _, s := range svc.Secrets {
			if _, ok := cf.Secrets[s]; !ok {
				t.Errorf("%s: secret %q is not declared under secrets:", name, s)
			}
		}
		if svcEnv != nil && (!slices.Equal(keys(svcEnv), keys(svc.Environment)) || !slices.Equal(svcSecrets, svc.Secrets)) {
			t.Errorf("%s: environment %v and secrets %v differ from the other replica's %v, %v", name, keys(svc.Environment), svc.Secrets, keys(svcEnv), svcSecrets)
		}
		svcEnv, svcSecrets = svc.Environment, svc.Secrets
	}

	// examples/config.yaml with its state section switched as its comment
	// (and this file's header) say: path deleted, driver and dsn_file
	// uncommented.
	example, err := os.ReadFile("../examples/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := string(example)
	for _, edit := range []struct{ old, new string }{
		{"  path: /var/lib/calpresence/state.db\n", ""},
		{"  # driver: postgres\n", "  driver: postgres\n"},
		{"  # dsn_file: /run/secrets/postgres-dsn\n", "  dsn_file: /run/secrets/postgres-dsn\n"},
	} {
		if !strings.Contains(text, edit.old) {
			t.Fatalf("examples/config.yaml has no line %q to edit for compose-replicas.yaml", edit.old)
		}
		text = strings.Replace(text, edit.old, edit.new, 1)
	}
	env := map[string]string{}
	for k := range svcEnv {
		env[k] = "x-" + strings.ToLower(k)
	}
	const dsn = "postgres://calpresence:pw@postgres:5432/calpresence?sslmode=disable"
	files := map[string]string{}
	for _, s := range svcSecrets {
		files["/run/secrets/"+s] = "compose-secret"
	}
	files["/run/secrets/postgres-dsn"] = dsn
	cfg, err := loadAsDeployed(t, text, env, files)
	if err != nil {
		t.Fatalf("examples/config.yaml (state switched to postgres) under compose-replicas.yaml: %v", err)
	}
	if !slices.Contains(svcSecrets, "postgres-dsn") || cfg.State.Driver != config.DriverPostgres || string(cfg.State.DSN) != dsn {
		t.Errorf("secrets %v, state driver %q, dsn %v; want the postgres-dsn secret read through state.dsn_file", svcSecrets, cfg.State.Driver, cfg.State.DSN)
	}
	if cfg.Graph.ClientSecret != "compose-secret" {
		t.Errorf("client secret = %q; want the compose secret's content", string(cfg.Graph.ClientSecret))
	}
	checkListen(t, "examples/config.yaml", cfg, listenPort(t))
}
