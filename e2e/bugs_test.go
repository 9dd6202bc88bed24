package e2e

import (
	"os"
	"testing"
)

// knownBug skips a test that shows a known, unfixed bug in sync or graph,
// so that `go test ./e2e/` stays green; E2E_KNOWN_BUGS=1 runs it (and it
// fails until the bug is fixed). Remove the call with the fix.
func knownBug(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("E2E_KNOWN_BUGS") == "" {
		t.Skipf("known bug (set E2E_KNOWN_BUGS=1 to run): %s", what)
	}
}
