package deploy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/calpresence/calpresence/config"
)

// The binary's defaults, which every file here must agree with.
var (
	defaults    = config.Default()
	configDir   = filepath.Dir(config.DefaultPath)
	configFile  = filepath.Base(config.DefaultPath)
	stateDir    = filepath.Dir(defaults.State.Path)
	shutdownMax = defaults.Server.ShutdownTimeout
)

// listenPort is the port of server.listen's default (":8080").
func listenPort(t *testing.T) int {
	t.Helper()
	_, p, err := net.SplitHostPort(defaults.Server.Listen)
	if err != nil {
		t.Fatalf("config.Default().Server.Listen = %q: %v", defaults.Server.Listen, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("config.Default().Server.Listen = %q: port %v", defaults.Server.Listen, err)
	}
	return n
}

// portOf is the port of a listen address of the binary's defaults, e.g.
// selfservice.listen ":8082".
func portOf(t *testing.T, key, listen string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(listen)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil {
		t.Fatalf("default %s = %q: no port", key, listen)
	}
	return n
}

// readDocs decodes every YAML document in path into a T.
func readDocs[T any](t *testing.T, path string) []T {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return decodeDocs[T](t, path, data)
}

// decodeDocs decodes every YAML document in data, which came from path
// (for messages), into a T.
func decodeDocs[T any](t *testing.T, path string, data []byte) []T {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []T
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(out)+1, err)
		}
		if len(node.Content) == 0 || node.Content[0].Tag == "!!null" {
			continue // an empty document (a trailing ---)
		}
		var v T
		if err := node.Decode(&v); err != nil {
			t.Fatalf("%s: document %d: %v", path, len(out)+1, err)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no YAML document", path)
	}
	return out
}

// dockerfile is what the image promises: its user, its state volume, the
// port it exposes.
type dockerfile struct {
	user, volume string
	expose       int
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "USER":
			d.user = f[1]
		case "VOLUME":
			var vols []string
			if err := yaml.Unmarshal([]byte(strings.Join(f[1:], " ")), &vols); err != nil || len(vols) != 1 {
				t.Fatalf("Dockerfile: VOLUME %v: want one JSON path (err %v)", f[1:], err)
			}
			d.volume = vols[0]
		case "EXPOSE":
			d.expose, _ = strconv.Atoi(f[1])
		}
	}
	if d.user == "" || d.volume == "" || d.expose == 0 {
		t.Fatalf("Dockerfile: USER %q, VOLUME %q, EXPOSE %d: want all three", d.user, d.volume, d.expose)
	}
	return d
}

func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	if d.volume != stateDir {
		t.Errorf("Dockerfile VOLUME = %q; want the directory of state.path %q", d.volume, stateDir)
	}
	if d.expose != listenPort(t) {
		t.Errorf("Dockerfile EXPOSE = %d; want the port of server.listen %q", d.expose, defaults.Server.Listen)
	}
}

// envVars lists the ${VAR} names a configuration text uses.
func envVars(text string) []string {
	var names []string
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`).FindAllStringSubmatch(text, -1) {
		if !slices.Contains(names, m[1]) {
			names = append(names, m[1])
		}
	}
	return names
}

// loadAsDeployed loads a configuration as the deployment would see it:
// env is its environment, and files are the files it is given (absolute
// path → content), which are written under a temporary directory and the
// paths rewritten in text to match. Every path in files must occur in text,
// so a rename on one side cannot pass unnoticed.
func loadAsDeployed(t *testing.T, text string, env, files map[string]string) (*config.Config, error) {
	t.Helper()
	dir := t.TempDir()
	for path, content := range files {
		if !strings.Contains(text, path) {
			t.Errorf("the configuration does not name %s, which the deployment provides", path)
		}
		local := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		text = strings.ReplaceAll(text, path, filepath.ToSlash(local))
	}
	for _, name := range envVars(text) {
		v, ok := env[name]
		t.Setenv(name, v) // restored when the test ends
		if !ok {
			os.Unsetenv(name) // not provided: Load must fail naming it
		}
	}
	path := filepath.Join(dir, configFile)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(path)
}

// checkListen checks that a loaded configuration listens where the probes
// and ports say, on every interface.
func checkListen(t *testing.T, where string, cfg *config.Config, port int) {
	t.Helper()
	host, p, err := net.SplitHostPort(cfg.Server.Listen)
	if err != nil {
		t.Fatalf("%s: server.listen = %q: %v", where, cfg.Server.Listen, err)
	}
	if p != strconv.Itoa(port) {
		t.Errorf("%s: server.listen = %q; want port %d", where, cfg.Server.Listen, port)
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		t.Errorf("%s: server.listen = %q; want all interfaces (probes and scrapes come from outside)", where, cfg.Server.Listen)
	}
}

// commandLine returns the subcommand and the configuration file that
// calpresence's arguments (an ExecStart= or a container's command) name.
func commandLine(args []string) (sub, cfgPath string) {
	cfgPath = config.DefaultPath
	for i, a := range args {
		switch {
		case i == 0:
			sub = a
		case (a == "-config" || a == "--config") && i+1 < len(args):
			cfgPath = args[i+1]
		case strings.HasPrefix(a, "-config="):
			cfgPath = strings.TrimPrefix(a, "-config=")
		}
	}
	return sub, cfgPath
}

// TestDocumentedPaths checks that every file under deploy/ or docs/ that the
// README, the docs and the deployment files name exists, so their commands
// work as written.
func TestDocumentedPaths(t *testing.T) {
	re := regexp.MustCompile("(?:^|[\\s`(])((?:deploy|docs)/[A-Za-z0-9_./-]*[A-Za-z0-9_/])")
	for _, doc := range []string{"../README.md", "../docs/operations.md", "../docs/deploy.md", "../docs/webhooks.md", "../docs/architecture.md", "calpresence.service", "compose.yaml", "compose-replicas.yaml", "grafana/README.md", "helm/calpresence/README.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			p := m[1]
			switch p {
			case "deploy/calpresence": // kubectl's name for the Deployment
				continue
			case "deploy/config.yaml", "deploy/graph-client-secret", "deploy/.env", "deploy/postgres-dsn", "deploy/postgres-password": // created by the user for Compose
				continue
			}
			n++
			if _, err := os.Stat(filepath.Join("..", p)); err != nil {
				t.Errorf("%s names %s: %v", doc, p, err)
			}
		}
		if n == 0 && doc != "calpresence.service" {
			t.Errorf("%s names no file under deploy/ or docs/", doc)
		}
	}
}
