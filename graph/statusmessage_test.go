package graph

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/presence"
)

// TestStatusMessageRoundTrip: setStatusMessage sends the text and its
// expiry in UTC, the message shows in a read, and ClearStatusMessage
// removes it; both are paced as presence writes.
func TestStatusMessageRoundTrip(t *testing.T) {
	writes, reads := &countingPacer{}, &countingPacer{}
	e := newEnv(t, nil, WithPacer(writes), WithReadPacer(reads))
	ctx := ctxT(t)
	exp := time.Now().Add(90 * time.Minute).Truncate(time.Second)
	if err := e.c.SetStatusMessage(ctx, aliceID, "In a Zoom meeting until 15:00", exp); err != nil {
		t.Fatalf("SetStatusMessage = %v", err)
	}
	m, ok := e.srv.StatusMessage(aliceID)
	if !ok || m.Content != "In a Zoom meeting until 15:00" || !m.Expires.Equal(exp) {
		t.Errorf("fake holds %+v, %v; want the message until %s", m, ok, exp)
	}
	call := e.srv.CallsOp(graphtest.OpSetStatusMessage)[0]
	for _, want := range []string{`"contentType":"text"`, `"timeZone":"UTC"`, `"dateTime":"` + exp.UTC().Format(graphDateTime) + `"`} {
		if !strings.Contains(string(call.Body), want) {
			t.Errorf("body %s lacks %s", call.Body, want)
		}
	}
	got, err := e.c.ReadPresences(ctx, []string{aliceID})
	if err != nil || got[aliceID].StatusMessage != "In a Zoom meeting until 15:00" {
		t.Errorf("read back %+v, %v; want the message", got[aliceID], err)
	}
	if err := e.c.ClearStatusMessage(ctx, aliceID); err != nil {
		t.Fatalf("ClearStatusMessage = %v", err)
	}
	if m, ok := e.srv.StatusMessage(aliceID); ok {
		t.Errorf("fake holds %+v after ClearStatusMessage; want none", m)
	}
	if got, _ := e.c.ReadPresences(ctx, []string{aliceID}); got[aliceID].StatusMessage != "" {
		t.Errorf("read back %+v after the clear; want no message", got[aliceID])
	}
	if writes.acquired != 2 || reads.acquired != 2 {
		t.Errorf("slots: writes %d, reads %d; want 2 and 2", writes.acquired, reads.acquired)
	}

	// Refused locally, without a call.
	n := len(e.srv.Calls())
	if err := e.c.SetStatusMessage(ctx, aliceID, " ", exp); presence.KindOf(err) != presence.Permanent {
		t.Errorf("SetStatusMessage(empty) = %v; want Permanent", err)
	}
	if err := e.c.SetStatusMessage(ctx, aliceID, "late", time.Now().Add(-time.Minute)); presence.KindOf(err) != presence.Permanent {
		t.Errorf("SetStatusMessage(past expiry) = %v; want Permanent", err)
	}
	if len(e.srv.Calls()) != n {
		t.Errorf("refused calls reached Graph")
	}
	// No expiry: none sent.
	if err := e.c.SetStatusMessage(ctx, bobID, "Focus time", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if m, ok := e.srv.StatusMessage(bobID); !ok || !m.Expires.IsZero() {
		t.Errorf("fake holds %+v, %v; want a message without expiry", m, ok)
	}
}

// TestStatusMessageDryRun: in dry run the message calls are logged, not
// sent.
func TestStatusMessageDryRun(t *testing.T) {
	srv := graphtest.NewServer(t)
	logs := &testutil.LogBuffer{}
	cfg := config.Graph{DryRun: true, Endpoint: srv.GraphURL(), AuthorityHost: srv.AuthorityHost()}
	c, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := c.SetStatusMessage(ctx, aliceUPN, "In a meeting", time.Now().Add(time.Hour)); err != nil {
		t.Errorf("SetStatusMessage = %v", err)
	}
	if err := c.ClearStatusMessage(ctx, aliceUPN); err != nil {
		t.Errorf("ClearStatusMessage = %v", err)
	}
	if n := len(srv.Calls()); n != 0 {
		t.Errorf("calls = %d; want none", n)
	}
	for _, want := range []string{"set status message", `message="In a meeting"`, "clear status message"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("dry-run log lacks %q:\n%s", want, logs.String())
		}
	}
}
