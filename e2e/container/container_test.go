// Package container runs the calpresence container image as users do: with
// podman, --network=host on 127.0.0.1 ports only, against the fake Entra +
// Graph (graph/graphtest) and an https feed with its own CA, both served by
// the test on loopback.
//
// It needs an image and podman, which scripts/container-test.sh provides
// (it builds the Dockerfile and sets CALPRESENCE_CONTAINER_IMAGE); without
// them the tests skip.
package container

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
)

const (
	aliceID = "6e3f7a2c-1b9d-4c5e-8f00-0a1b2c3d4e5f"
	// arbitraryUID is a uid the image does not know, as OpenShift assigns;
	// podman runs it with group 0.
	arbitraryUID = "12345"
)

var image = os.Getenv("CALPRESENCE_CONTAINER_IMAGE")

func needImage(t *testing.T) {
	t.Helper()
	if image == "" {
		t.Skip("CALPRESENCE_CONTAINER_IMAGE not set: run scripts/container-test.sh")
	}
}

// podman runs podman with args and returns its combined output and exit
// status (-1 when it could not run).
func podman(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command("podman", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("podman %v: %v", args, err)
	}
	return out.String(), code
}

func mustPodman(t *testing.T, args ...string) string {
	t.Helper()
	out, code := podman(t, args...)
	if code != 0 {
		t.Fatalf("podman %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return strings.TrimSpace(out)
}

// runArgs are the podman run flags every container gets: the host's
// network (loopback only is used), the ulimits these machines need.
func runArgs(name string) []string {
	args := []string{"run", "--name", name, "--network=host"}
	return append(args, strings.Fields(os.Getenv("CALPRESENCE_CONTAINER_ULIMITS"))...)
}

var seq int

// name returns a container or volume name unique to this test run, removed
// (with anything of that name) when the test ends.
func name(t *testing.T, kind string) string {
	t.Helper()
	seq++
	n := fmt.Sprintf("calpresence-test-%d-%d", os.Getpid(), seq)
	t.Cleanup(func() {
		if kind == "volume" {
			podman(t, "volume", "rm", "-f", n)
			return
		}
		if t.Failed() {
			out, _ := podman(t, "logs", n)
			t.Logf("logs of %s:\n%s", n, out)
		}
		podman(t, "rm", "-f", "-t", "0", n)
	})
	return n
}

// env is a fake Graph, an https feed with a meeting running now for alice,
// and a configuration directory to mount on /etc/calpresence.
type env struct {
	g      *graphtest.Server
	cfgDir string
	listen string // the daemon's server address, 127.0.0.1:port
}

func newEnv(t *testing.T) *env {
	t.Helper()
	g := graphtest.NewServer(t, graphtest.WithUsers(graphtest.User{ID: aliceID, UserPrincipalName: "alice@contoso.com", Mail: "alice@contoso.com"}))
	start := time.Now().Add(-time.Minute).UTC()
	end := start.Add(time.Hour)
	feed := fmt.Sprintf("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//container//EN\r\nBEGIN:VEVENT\r\nUID:ZOOM-container-1\r\nDTSTAMP:20260101T000000Z\r\n"+
		"DTSTART:%s\r\nDTEND:%s\r\nSUMMARY:Zoom call\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		start.Format("20060102T150405Z"), end.Format("20060102T150405Z"))
	// The feed has its own CA, trusted through schedule.ca_file only.
	feedSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/calendar")
		io.WriteString(w, feed)
	}))
	t.Cleanup(feedSrv.Close)

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil { // read by the container's uid
		t.Fatal(err)
	}
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("graph-ca.pem", string(g.CAPEM()))
	write("feed-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: feedSrv.Certificate().Raw})))
	e := &env{g: g, cfgDir: dir, listen: freeAddr(t)}
	gc := g.Config()
	write("config.yaml", fmt.Sprintf(`graph:
  tenant_id: %s
  client_id: %s
  client_secret: %s
  endpoint: %s
  authority_host: %s
  ca_file: /etc/calpresence/graph-ca.pem
schedule:
  poll_interval: 2s
  ca_file: /etc/calpresence/feed-ca.pem
server:
  listen: "%s"
sources:
  - name: zoom
    url: %s/feed.ics
    users: [alice@contoso.com]
`, gc.TenantID, gc.ClientID, string(gc.ClientSecret), gc.Endpoint, gc.AuthorityHost, e.listen, feedSrv.URL))
	return e
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs the daemon detached with extra podman flags.
func (e *env) start(t *testing.T, name string, flags ...string) {
	t.Helper()
	args := append(runArgs(name), "-d", "-v", e.cfgDir+":/etc/calpresence:ro")
	args = append(append(args, flags...), image)
	mustPodman(t, args...)
}

func (e *env) get(path string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + e.listen + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitReady waits for /healthz and /readyz to answer 200.
func (e *env) waitReady(t *testing.T, name string) {
	t.Helper()
	for _, path := range []string{"/healthz", "/readyz"} {
		var code int
		var body string
		var err error
		if !testutil.WaitUntil(60*time.Second, func() bool {
			code, body, err = e.get(path)
			return code == http.StatusOK
		}) {
			out, _ := podman(t, "logs", name)
			t.Fatalf("GET %s = %d %q, %v after 60s; want 200\nlogs:\n%s", path, code, body, err, out)
		}
	}
}

// waitSets waits until the fake has answered n setPresence calls for alice.
func (e *env) waitSets(t *testing.T, n int) {
	t.Helper()
	if !testutil.WaitUntil(30*time.Second, func() bool { return len(e.sets()) >= n }) {
		t.Fatalf("setPresence calls = %d after 30s; want %d", len(e.sets()), n)
	}
}

func (e *env) sets() []graphtest.Call {
	var out []graphtest.Call
	for _, c := range e.g.PresenceCalls() {
		if c.Op == graphtest.OpSetPresence && c.User == aliceID && c.Status == http.StatusOK {
			out = append(out, c)
		}
	}
	return out
}

// stop sends SIGTERM (podman stop) and returns the exit code.
func stop(t *testing.T, name string) string {
	t.Helper()
	t0 := time.Now()
	mustPodman(t, "stop", "-t", "30", name)
	code := mustPodman(t, "inspect", "-f", "{{.State.ExitCode}}", name)
	t.Logf("%s stopped by SIGTERM in %v, exit %s", name, time.Since(t0).Round(time.Millisecond), code)
	return code
}

// checkJSONLogs checks that every line the container logged is JSON.
func checkJSONLogs(t *testing.T, name string) {
	t.Helper()
	out := mustPodman(t, "logs", name)
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		n++
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["level"] == nil || rec["msg"] == nil {
			t.Errorf("log line is not a JSON log record: %q", line)
		}
	}
	if n == 0 {
		t.Errorf("%s logged nothing", name)
	}
}

// TestNonroot runs the image as it is (uid 65532) with --read-only and a
// named volume: the endpoints, exec resync and validate, SIGTERM, and the
// state surviving a restart.
func TestNonroot(t *testing.T) {
	needImage(t)
	t0 := time.Now()
	e := newEnv(t)
	vol, c := name(t, "volume"), name(t, "container") // the container goes first
	e.start(t, c, "--read-only", "-v", vol+":/var/lib/calpresence")
	e.waitReady(t, c)
	e.waitSets(t, 1)
	t.Logf("ready and presence set %v after start", time.Since(t0).Round(time.Millisecond))

	if uid := mustPodman(t, "exec", c, "/calpresence", "version"); !strings.Contains(uid, "container-test") {
		t.Errorf("exec version = %q; want the build's VERSION", uid)
	}
	if user := mustPodman(t, "inspect", "-f", "{{.Config.User}}", c); user != "65532:65532" {
		t.Errorf("container user = %q; want 65532:65532", user)
	}
	code, body, err := e.get("/metrics")
	if code != 200 || !strings.Contains(body, `calpresence_feed_healthy{source="zoom"} 1`) || !strings.Contains(body, "calpresence_sessions 1") {
		t.Errorf("GET /metrics = %d, %v; want 200 with the zoom feed healthy and one session:\n%s", code, err, grep(body, "calpresence_"))
	}
	code, body, _ = e.get("/readyz")
	if !strings.Contains(body, `"source_counts":{"total":1,"loaded":1,"failing":0,"stale":0}`) {
		t.Errorf("GET /readyz = %d %s; want the zoom source counted, loaded", code, body)
	}
	code, body, _ = e.get("/readyz?verbose")
	if !strings.Contains(body, `"zoom"`) {
		t.Errorf("GET /readyz?verbose = %d %s; want the zoom source named", code, body)
	}

	out := mustPodman(t, "exec", c, "/calpresence", "resync")
	if !strings.Contains(out, "no presence changes") {
		t.Errorf("exec resync = %q; want no presence changes (alice is already set)", out)
	}
	out = mustPodman(t, "exec", c, "/calpresence", "validate")
	if !strings.Contains(out, "/etc/calpresence/config.yaml: ok") {
		t.Errorf("exec validate = %q; want ok", out)
	}

	if code := stop(t, c); code != "0" {
		t.Errorf("exit code after SIGTERM = %s; want 0", code)
	}
	checkJSONLogs(t, c)
	if n := len(e.sets()); n != 1 {
		t.Errorf("setPresence calls before the restart = %d; want 1", n)
	}

	// The session recorded in the volume survives: a restart sets nobody
	// again (alice's session is still valid for her running meeting).
	mustPodman(t, "start", c)
	e.waitReady(t, c)
	time.Sleep(5 * time.Second) // the first pass is done (ready); two more polls of 2s
	if n := len(e.sets()); n != 1 {
		t.Errorf("setPresence calls after the restart = %d; want still 1 (the session was stored)", n)
	}
	if code := stop(t, c); code != "0" {
		t.Errorf("exit code after the second SIGTERM = %s; want 0", code)
	}
	out = mustPodman(t, append(runArgs(name(t, "container")), "--rm", "-v", vol+":/var/lib/calpresence", image,
		"state", "check", "-path", "/var/lib/calpresence/state.db")...)
	if !strings.Contains(out, "sessions") {
		t.Errorf("state check = %q; want a report of the sessions bucket", out)
	}
	t.Logf("state check after two runs:\n%s", out)
}

// TestArbitraryUID runs the image as a uid it does not know, in group 0
// (OpenShift's convention), with --read-only: on a fresh named volume (the
// image's state directory is group 0 and group-writable) and on a host
// directory writable by group 0.
func TestArbitraryUID(t *testing.T) {
	needImage(t)
	t.Run("volume", func(t *testing.T) {
		e := newEnv(t)
		vol, c := name(t, "volume"), name(t, "container") // the container goes first
		e.start(t, c, "--read-only", "--user", arbitraryUID, "-v", vol+":/var/lib/calpresence")
		e.waitReady(t, c)
		e.waitSets(t, 1)
		if code := stop(t, c); code != "0" {
			t.Errorf("exit code after SIGTERM = %s; want 0", code)
		}
	})
	t.Run("bind", func(t *testing.T) {
		e := newEnv(t)
		dir := filepath.Join(t.TempDir(), "state")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		// root:root, writable for group 0 only (past the umask).
		if err := os.Chmod(dir, 0o770); err != nil {
			t.Fatal(err)
		}
		c := name(t, "container")
		e.start(t, c, "--read-only", "--user", arbitraryUID, "-v", dir+":/var/lib/calpresence")
		e.waitReady(t, c)
		e.waitSets(t, 1)
		if code := stop(t, c); code != "0" {
			t.Errorf("exit code after SIGTERM = %s; want 0", code)
		}
		st, err := os.Stat(filepath.Join(dir, "state.db"))
		if err != nil {
			t.Fatalf("state file on the host: %v", err)
		}
		t.Logf("state file on the host: %v %d bytes", st.Mode(), st.Size())
		// A restart as the same uid reads it back: no second set.
		mustPodman(t, "start", c)
		e.waitReady(t, c)
		time.Sleep(5 * time.Second)
		if n := len(e.sets()); n != 1 {
			t.Errorf("setPresence calls after the restart = %d; want 1", n)
		}
		stop(t, c)
	})
}

// TestStateNotWritable: with the state directory not writable the daemon
// exits 2 at once (the preflight it shares with validate finds it: a
// deployment error), logging (JSON) an error that names the directory and
// the fix.
func TestStateNotWritable(t *testing.T) {
	needImage(t)
	e := newEnv(t)
	roDir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(roDir, 0o755); err != nil { // root's only
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		flags []string
		want  []string
	}{
		{"read-only root, no volume", []string{"--read-only", "--image-volume=ignore"}, []string{
			"read-only file system", "mount a writable volume on /var/lib/calpresence"}},
		{"host directory of another owner", []string{"--user", arbitraryUID, "-v", roDir + ":/var/lib/calpresence"}, []string{
			"permission denied", "/var/lib/calpresence cannot be written by this process (uid 12345, gid 0)", "group 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(runArgs(name(t, "container")), "-v", e.cfgDir+":/etc/calpresence:ro")
			args = append(append(args, tt.flags...), image)
			t0 := time.Now()
			out, code := podman(t, args...)
			if code != 2 {
				t.Fatalf("exit %d; want 2\n%s", code, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			var rec struct{ Level, Msg, Err string }
			if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil || rec.Level != "ERROR" {
				t.Errorf("first line %q; want a JSON log record at level ERROR", lines[0])
			}
			for _, w := range tt.want {
				if !strings.Contains(rec.Err, w) {
					t.Errorf("logged error %q lacks %q", rec.Err, w)
				}
			}
			t.Logf("exit 1 in %v:\n%s", time.Since(t0).Round(time.Millisecond), out)
		})
	}
}

// TestExamples runs the README's examples through the image: the quick start
// (a dry-run plan over examples/feeds) and validate of examples/config.yaml
// with the variables the README's docker run sets.
func TestExamples(t *testing.T) {
	needImage(t)
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	out := mustPodman(t, append(runArgs(name(t, "container")), "--rm", "-v", examples+":/etc/calpresence:ro", image,
		"plan", "-config", "/etc/calpresence/quickstart.yaml", "-from", "2026-01-05T00:00:00Z", "-to", "2026-01-06T00:00:00Z")...)
	if !strings.Contains(out, "Daily stand-up") {
		t.Errorf("plan of the quick start = %q; want the daily stand-up", out)
	}
	secret := filepath.Join(t.TempDir(), "graph-client-secret")
	if err := os.WriteFile(secret, []byte("s3cr3t\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustPodman(t, append(runArgs(name(t, "container")), "--rm",
		"-e", "AZURE_TENANT_ID=72f988bf-0000-4000-8000-00000000c0de", "-e", "AZURE_CLIENT_ID=22553876-f5ab-4529-bffb-cfe50aa89f87",
		"-e", "ZOOM_TOKEN=t", "-e", "WEBEX_FEED_TOKEN=t",
		"-v", examples+"/config.yaml:/etc/calpresence/config.yaml:ro",
		"-v", secret+":/run/secrets/graph-client-secret:ro", image, "validate")...)
	if !strings.Contains(out, "ok") {
		t.Errorf("validate examples/config.yaml = %q; want ok", out)
	}
}

// grep returns the lines of s containing sub.
func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
