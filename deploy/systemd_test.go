package deploy

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
)

// unitFile is a systemd unit: section → key → values in order.
type unitFile map[string]map[string][]string

func readUnit(t *testing.T, path string) (unitFile, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		case section == "":
			t.Fatalf("%s:%d: %q outside a section", path, n, line)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.HasSuffix(line, `\`) {
				t.Fatalf("%s:%d: %q: want Key=Value on one line", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u, string(data)
}

// last is the value systemd uses for a key set once or more.
func (u unitFile) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func TestSystemdUnit(t *testing.T) {
	u, text := readUnit(t, "calpresence.service")
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Errorf("calpresence.service: no [%s] section", s)
		}
	}
	exec := strings.Fields(u.last("Service", "ExecStart"))
	if len(exec) < 2 || !filepath.IsAbs(exec[0]) {
		t.Fatalf("ExecStart = %q; want an absolute path to calpresence and a subcommand", exec)
	}
	if sub, cfgPath := commandLine(exec[1:]); sub != "run" || cfgPath != config.DefaultPath {
		t.Errorf("ExecStart = %q: subcommand %q, config %q; want run, %q", exec, sub, cfgPath, config.DefaultPath)
	}
	if got := "/var/lib/" + u.last("Service", "StateDirectory"); got != stateDir {
		t.Errorf("StateDirectory=%s gives %s; want the directory of state.path %q", u.last("Service", "StateDirectory"), got, stateDir)
	}
	if d, err := time.ParseDuration(u.last("Service", "TimeoutStopSec") + "s"); err != nil || d <= shutdownMax {
		t.Errorf("TimeoutStopSec=%s; want seconds above server.shutdown_timeout %v (err %v)", u.last("Service", "TimeoutStopSec"), shutdownMax, err)
	}
	for key, want := range map[string]string{
		"DynamicUser":              "yes",
		"ProtectSystem":            "strict",
		"ProtectHome":              "yes",
		"NoNewPrivileges":          "yes",
		"PrivateTmp":               "yes",
		"PrivateDevices":           "yes",
		"CapabilityBoundingSet":    "",
		"AmbientCapabilities":      "",
		"KillSignal":               "SIGTERM",
		"RestartPreventExitStatus": "2", // usage or configuration error
	} {
		if v, ok := u["Service"][key]; !ok || v[len(v)-1] != want {
			t.Errorf("[Service] %s=%q (set: %v); want %q", key, u.last("Service", key), ok, want)
		}
	}

	// The Graph secret comes as a systemd credential; the comment tells
	// how the configuration names it. Load a configuration with that line,
	// in the environment systemd gives the service.
	cred := u.last("Service", "LoadCredential")
	name, _, ok := strings.Cut(cred, ":")
	if !ok || name == "" {
		t.Fatalf("LoadCredential=%q; want NAME:PATH", cred)
	}
	m := regexp.MustCompile(`(?m)^#\s+(client_secret_file: .*)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("calpresence.service: no comment saying how the configuration names the credential (client_secret_file: ...)")
	}
	credDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(credDir, name), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", credDir)
	cfgText := "graph:\n  tenant_id: t\n  client_id: c\n  " + m[1] + "\nsources:\n  - {name: a, url: 'https://example.com/a.ics', users: [a@example.com]}\n"
	cfg, err := config.Parse([]byte(cfgText), filepath.Join(t.TempDir(), configFile))
	if err != nil {
		t.Fatalf("the unit's %q does not load: %v", m[1], err)
	}
	if cfg.Graph.ClientSecret != "s3cret" {
		t.Errorf("client secret read through the credential = %q; want the credential's content", string(cfg.Graph.ClientSecret))
	}
}
