package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
)

// readbackEvery has e's configuration read back every second.
func (e *e2eEnv) readbackEvery(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(e.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "graph:\n", "graph:\n  readback_interval: 1s\n", 1)
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sets returns the setPresence calls the fake received for alice.
func sets(g *graphtest.Server) int {
	n := 0
	for _, c := range g.PresenceCalls() {
		if c.Op == graphtest.OpSetPresence && c.User == aliceID {
			n++
		}
	}
	return n
}

// TestRunReadbackSetsLostSession: Graph drops the daemon's session without
// a word; the read-back sees Teams show alice Available and sets it again
// within a few intervals.
func TestRunReadbackSetsLostSession(t *testing.T) {
	e := newE2E(t, 2*time.Second, time.Minute)
	e.readbackEvery(t)
	d := startDaemon(t, e.cfgPath)
	addr := d.serving(t)
	waitCalls(t, e.g, 1, time.Until(e.start)+5*time.Second)
	time.Sleep(3 * time.Second) // read back and shown once
	if n := len(e.g.CallsOp(graphtest.OpReadPresences)); n == 0 {
		t.Fatalf("no getPresencesByUserId call within 3s of the set (readback_interval 1s)")
	}
	e.g.LoseSession(aliceID)
	lost := time.Now()
	if !testutil.WaitUntil(6*time.Second, func() bool { return sets(e.g) == 2 }) {
		t.Fatalf("lost session not set again within 6s: %d sets", sets(e.g))
	}
	t.Logf("set again %v after Graph lost it", time.Since(lost).Round(time.Millisecond))
	if got := e.g.Shown(aliceID); got.Availability != "Busy" {
		t.Errorf("Teams shows alice %s after the re-set; want Busy", got.Availability)
	}
	d.waitLog(t, "Graph lost it; setting it again", time.Second)
	metrics := get(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`calpresence_readback_reasserts_total 1`,
		`calpresence_graph_requests_total{code="200",op="getPresencesByUserId"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestRunReadbackLeavesOwnStatus: alice sets herself Available in Teams;
// the daemon sets its session once more, sees her own status still win,
// and stops: no fight, and the status page says why.
func TestRunReadbackLeavesOwnStatus(t *testing.T) {
	e := newE2E(t, 2*time.Second, time.Minute)
	e.readbackEvery(t)
	d := startDaemon(t, e.cfgPath)
	addr := d.serving(t)
	waitCalls(t, e.g, 1, time.Until(e.start)+5*time.Second)
	time.Sleep(3 * time.Second)
	e.g.SetPreferred(aliceID, "Available", "Available")
	if !testutil.WaitUntil(6*time.Second, func() bool { return sets(e.g) >= 2 }) {
		t.Fatalf("no re-set within 6s of her own status: %d sets", sets(e.g))
	}
	d.waitLog(t, "the person's own status, which wins", 6*time.Second)
	time.Sleep(5 * time.Second) // five more reads
	if n := sets(e.g); n != 2 {
		t.Errorf("%d sets; want 2 (the set and one re-set, then none)", n)
	}
	if n := strings.Count(d.log(), "the person's own status, which wins"); n != 1 {
		t.Errorf("%d log lines for her own status; want 1", n)
	}
	page := get(t, "http://"+addr+"/")
	if !strings.Contains(page, "Teams shows Available &mdash; their own status") && !strings.Contains(page, "Teams shows Available — their own status") {
		t.Errorf("status page does not say her own status wins:\n%s", page)
	}
	metrics := get(t, "http://"+addr+"/metrics")
	if !strings.Contains(metrics, `calpresence_readback_people{result="own_status"} 1`) {
		t.Errorf(`/metrics lacks calpresence_readback_people{result="own_status"} 1`)
	}
}

// TestRunStatusMessage: with presence.status_message, the daemon sets the
// message after the span's set, expiring at the span's end; a message
// alice wrote herself is never replaced.
func TestRunStatusMessage(t *testing.T) {
	for _, own := range []string{"", "Out for lunch"} {
		t.Run("own="+own, func(t *testing.T) {
			e := newE2E(t, 2*time.Second, time.Minute)
			b, err := os.ReadFile(e.cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			cfg := strings.Replace(string(b), "schedule:\n", "presence:\n  status_message: \"In a {vendor} meeting until {end}\"\nschedule:\n  timezone: UTC\n", 1)
			if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			if own != "" {
				e.g.SetStatusMessage(aliceID, graphtest.StatusMessage{Content: own})
			}
			d := startDaemon(t, e.cfgPath)
			d.serving(t)
			waitCalls(t, e.g, 1, time.Until(e.start)+5*time.Second)
			want := "In a Zoom meeting until " + e.end.UTC().Format("15:04")
			if own != "" {
				d.waitLog(t, "the person's own status message stays", 6*time.Second)
				if m, _ := e.g.StatusMessage(aliceID); m.Content != own {
					t.Errorf("status message = %q; want hers, %q", m.Content, own)
				}
				if n := len(e.g.CallsOp(graphtest.OpSetStatusMessage)); n != 0 {
					t.Errorf("%d setStatusMessage calls; want none", n)
				}
				return
			}
			if !testutil.WaitUntil(6*time.Second, func() bool { m, _ := e.g.StatusMessage(aliceID); return m.Content == want }) {
				m, _ := e.g.StatusMessage(aliceID)
				t.Fatalf("status message = %q; want %q", m.Content, want)
			}
			if m, _ := e.g.StatusMessage(aliceID); !m.Expires.Equal(e.end) {
				t.Errorf("status message expires %v; want the span's end %v", m.Expires, e.end)
			}
		})
	}
}
