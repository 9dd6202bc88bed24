package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
)

// TestRunOperatorClearSurvivesRestart: alice is cleared by an operator in
// the middle of her meeting, the daemon is killed and started again; the
// hold is in the state file, so nothing sets her before the meeting ends.
func TestRunOperatorClearSurvivesRestart(t *testing.T) {
	e := newE2E(t, 2*time.Second, 12*time.Second)
	d := startDaemon(t, e.cfgPath)
	d.serving(t)
	waitCalls(t, e.g, 1, time.Until(e.start)+5*time.Second)

	stdout, stderr, code := runCLI(t, nil, "clear", "-config", e.cfgPath, "-user", "alice@contoso.com")
	if code != 0 || !strings.Contains(stdout, "clear alice@contoso.com (operator)") {
		t.Fatalf("clear next to the daemon: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	d.waitLog(t, `"msg":"presence clear"`, 5*time.Second)
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done

	d = startDaemon(t, e.cfgPath)
	addr := d.serving(t)
	ready := func() bool {
		r, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	}
	if !testutil.WaitUntil(10*time.Second, ready) {
		t.Fatal("the restarted daemon is not ready within 10s")
	}
	if page := get(t, "http://"+addr+"/"); !strings.Contains(page, "cleared by operator") {
		t.Errorf("status page after the restart lacks the operator's hold:\n%s", page)
	}
	time.Sleep(time.Until(e.end) + 2*time.Second)
	calls := e.g.PresenceCalls()
	var ops []string
	for _, c := range calls {
		ops = append(ops, c.Op)
	}
	if len(calls) != 2 || calls[0].Op != graphtest.OpSetPresence || calls[1].Op != graphtest.OpClearPresence {
		t.Errorf("presence calls = %v; want the set, the operator's clear and nothing after the restart", ops)
	}
}
