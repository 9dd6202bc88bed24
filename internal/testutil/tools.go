package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Tool finds a program a test needs (chromium, promtool) in PATH. Outside
// CI a machine without it skips the test, saying what is missing and which
// Debian package brings it; in CI (CI set) its absence is a failure, since
// .ci/run installs every such program: a test must not skip silently there.
func Tool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if ci := os.Getenv("CI"); ci != "" {
		t.Fatalf("%s not found in PATH with CI=%q set: .ci/run installs Debian's %s for this test", name, ci, debianPackage)
	}
	t.Skipf("%s not found in PATH: skipping (apt-get install %s to run it; CI does)", name, debianPackage)
	return ""
}
