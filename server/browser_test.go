package server

import (
	"bytes"
	"context"
	"image/png"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/internal/testutil"
)

// chromium finds Debian's chromium (testutil.Tool: a skip outside CI, a
// failure in it).
func chromium(t *testing.T) string { return testutil.Tool(t, "chromium", "chromium") }

// headless runs chromium headless on url with extra flags and returns its
// standard output. Its own network chatter is turned off (the machine's
// network is closed; only loopback is used) and it gets a fresh profile.
func headless(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// artifacts is where the screenshot goes: $CALPRESENCE_ARTIFACTS (CI keeps
// it), else a temporary folder.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CALPRESENCE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestStatusPageInChromium loads the real handler's status page in
// headless Chromium and checks the DOM it built for
// what a person looks for: who is busy and in which meeting, the stale
// source, who is held back and why. The page runs no script (its
// Content-Security-Policy, default-src 'none', forbids any), so what
// Chromium shows is what a browser without JavaScript shows. (Turning
// scripts off with --blink-settings would also stop --dump-dom, which
// reads the DOM through one.) It keeps a screenshot.
func TestStatusPageInChromium(t *testing.T) {
	bin := chromium(t)
	srv := httptest.NewServer(Handler(&fakeEngine{status: sampleStatus()}, prometheus.NewRegistry(), "", slog.New(slog.DiscardHandler)))
	defer srv.Close()

	dom := headless(t, bin, "--dump-dom", srv.URL+"/")
	if !bytes.Contains(dom, []byte("</html>")) {
		t.Fatalf("chromium --dump-dom gave no page:\n%s", dom)
	}
	doc := parseHTML(t, string(dom))
	if got := doc.byTag("head")[0].byTag("title"); len(got) != 1 || got[0].words() != "calpresence" { // the SVG has titles of its own
		t.Errorf("title = %v; want calpresence", got)
	}
	checkPage(t, doc)
	for _, secret := range []string{feedToken, pathToken, errToken} {
		if bytes.Contains(dom, []byte(secret)) {
			t.Errorf("the rendered page shows a secret (%q)", secret)
		}
	}

	shot := filepath.Join(artifacts(t), "status-page.png")
	_ = os.Remove(shot)
	headless(t, bin, "--hide-scrollbars", "--window-size=1280,1600", "--screenshot="+shot, srv.URL+"/")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 1600 {
		t.Errorf("screenshot is %dx%d; want 1280x1600", b.Dx(), b.Dy())
	}
	t.Logf("screenshot: %s", shot)
}
