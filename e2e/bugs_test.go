package e2e

import (
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
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

// TestBugBoundaryDuringSlowPassIsMissed: a boundary that falls while a
// reconcile pass is still sending its calls must be acted on when the pass
// ends.
//
// User a's meeting starts at T+2s and its setPresence takes 2 s to answer;
// user b's meeting ends at T+3s, during that pass. The engine schedules
// the next wake only after a pass, from Reconcile's "next future boundary",
// which ignores boundaries already due (the clear of b), so b's clear waits
// for the next boundary of anyone (a's end, T+12s) — with no other
// boundary, until b's 5-minute lease runs out. The same happens whenever a
// pass outlasts the gap to the next boundary: a burst paced by the rate
// limit, Graph latency, or Retry-After waits inside the client.
func TestBugBoundaryDuringSlowPassIsMissed(t *testing.T) {
	knownBug(t, "sync.Engine.nextWake ignores actions already due, so a boundary passed during a long pass is not acted on")
	t.Parallel()
	ids := userIDs(2)
	a, b := ids[0], ids[1]
	g := graphtest.NewServer(t)
	t0 := soon(2 * time.Second)
	bEnd := t0.Add(3 * time.Second)
	g.Inject(graphtest.Fault{Op: graphtest.OpSetPresence, User: a, Delay: 2 * time.Second})
	e := start(t, g, ics(event{"a-long", t0.Add(2 * time.Second), t0.Add(12 * time.Second)}), nil, options{
		users: []string{a},
		more:  []extraSource{{name: "webex", users: []string{b}, body: ics(event{"b-short", t0, bEnd})}},
	})

	c := e.waitFor("clearPresence for b", time.Until(t0)+16*time.Second, func(c graphtest.Call) bool {
		return c.Op == graphtest.OpClearPresence && c.User == b && c.Status == http.StatusOK
	})
	// The pass that delays it ends at about T+4s: 1 s after b's end.
	if lag := c.Time.Sub(bEnd); lag > 2*time.Second {
		t.Errorf("b's clearPresence sent %v after b's meeting ended; want within 2s (the slow pass ends 1s after it)", lag.Round(time.Millisecond))
	}
}
