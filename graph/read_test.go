package graph

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/presence"
)

// objectIDs returns n distinct object ids.
func objectIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("0000%04x-0000-4000-8000-%012d", i%0xffff, i)
	}
	return out
}

// TestReadPresencesBatches: ids go out at most 650 a call (Graph's
// maximum), never one call per person, and every id is answered once,
// keyed as asked; repeats and empty ids are not sent.
func TestReadPresencesBatches(t *testing.T) {
	tests := []struct {
		n         int
		wantCalls int
	}{
		{1, 1}, {650, 1}, {651, 2}, {1300, 2}, {1301, 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.n), func(t *testing.T) {
			e := newEnv(t, nil)
			ids := objectIDs(tt.n)
			asked := append(append([]string{}, ids...), strings.ToUpper(ids[0]), "", ids[len(ids)-1])
			got, err := e.c.ReadPresences(ctxT(t), asked)
			if err != nil {
				t.Fatalf("ReadPresences = %v", err)
			}
			calls := e.srv.CallsOp(graphtest.OpReadPresences)
			if len(calls) != tt.wantCalls {
				t.Errorf("getPresencesByUserId calls = %d; want %d", len(calls), tt.wantCalls)
			}
			var sent []string
			for _, c := range calls {
				if len(c.IDs) > MaxPresenceIDs || c.Method != http.MethodPost || c.Path != "/v1.0/communications/getPresencesByUserId" {
					t.Errorf("call %s %s with %d ids; want POST /v1.0/communications/getPresencesByUserId with at most %d", c.Method, c.Path, len(c.IDs), MaxPresenceIDs)
				}
				sent = append(sent, c.IDs...)
			}
			sort.Strings(sent)
			want := append([]string{}, ids...)
			sort.Strings(want)
			if strings.Join(sent, ",") != strings.Join(want, ",") {
				t.Errorf("ids sent (%d) differ from the distinct ids asked (%d)", len(sent), len(want))
			}
			if len(got) != tt.n {
				t.Errorf("ReadPresences returned %d people; want %d", len(got), tt.n)
			}
			if s, ok := got[ids[0]]; !ok || s.Availability != presence.Available {
				t.Errorf("ReadPresences[%s] = %+v, %v; want Available", ids[0], s, ok)
			}
			if n := len(e.srv.CallsOp(graphtest.OpGetUser)); n != 0 {
				t.Errorf("%d GET /users/{id} calls; want none", n)
			}
		})
	}
	e := newEnv(t, nil)
	if got, err := e.c.ReadPresences(ctxT(t), nil); err != nil || len(got) != 0 || len(e.srv.Calls()) != 0 {
		t.Errorf("ReadPresences(nil) = %v, %v after %d calls; want empty, nil, no call", got, err, len(e.srv.Calls()))
	}
}

// TestReadPresencesShown: the read shows what Teams shows, not what the
// worker set: the person's own status beats the session, a session Graph
// lost shows Available, and the status message comes back.
func TestReadPresencesShown(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	const carolID = "c0c0c0c0-0000-4000-8000-000000000003"
	for _, id := range []string{aliceID, bobID, carolID} {
		if err := e.c.SetPresence(ctx, id, presence.Busy, presence.ActivityInAConferenceCall, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.SetPreferred(bobID, presence.DoNotDisturb, "DoNotDisturb")
	e.srv.LoseSession(carolID)
	e.srv.SetStatusMessage(aliceID, graphtest.StatusMessage{Content: "Back at 3"})

	got, err := e.c.ReadPresences(ctx, []string{aliceID, bobID, carolID})
	if err != nil {
		t.Fatalf("ReadPresences = %v", err)
	}
	want := map[string]presence.Shown{
		aliceID: {Availability: presence.Busy, Activity: presence.ActivityInAConferenceCall, StatusMessage: "Back at 3"},
		bobID:   {Availability: presence.DoNotDisturb, Activity: "DoNotDisturb"},
		carolID: {Availability: presence.Available, Activity: presence.ActivityAvailable},
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("ReadPresences[%s] = %+v; want %+v", id, got[id], w)
		}
	}
}

// TestReadPresencesAnswerShapes: fields Graph may send are read (an
// expiry, out of office), ids nobody asked for are dropped, an id Graph
// left out is absent (unknown), and ids are matched without regard to
// case.
func TestReadPresencesAnswerShapes(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Inject(graphtest.Fault{Op: graphtest.OpReadPresences, Status: 200, ContentType: "application/json",
		Body: `{"value":[
			{"id":"` + strings.ToUpper(aliceID) + `","availability":"Busy","activity":"InAMeeting",
			 "outOfOfficeSettings":{"message":null,"isOutOfOffice":true},
			 "statusMessage":{"message":{"content":"Zoom until 15:00","contentType":"text"},
			   "expiryDateTime":{"dateTime":"2026-12-07T15:00:00.0000000","timeZone":"UTC"}},
			 "workLocation":{"workLocationType":"office"}},
			{"id":"someone-else","availability":"Away","activity":"Away"},
			{"id":null}
		]}`})
	got, err := e.c.ReadPresences(ctxT(t), []string{aliceID, bobID})
	if err != nil {
		t.Fatalf("ReadPresences = %v", err)
	}
	want := map[string]presence.Shown{aliceID: {Availability: presence.Busy, Activity: "InAMeeting",
		StatusMessage: "Zoom until 15:00", MessageExpires: time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC), OutOfOffice: true}}
	if len(got) != 1 || got[aliceID] != want[aliceID] {
		t.Errorf("ReadPresences = %+v; want %+v", got, want)
	}
}

// TestReadPresencesFailures: reads go through the one classification and
// the retry middleware: a 429 with Retry-After is retried (and pauses the
// read pacer), a 403 is permanent and not retried, and a failed batch
// names itself while the other batches' people are still returned.
func TestReadPresencesFailures(t *testing.T) {
	t.Run("429 retried", func(t *testing.T) {
		reads, writes := &countingPacer{}, &countingPacer{}
		e := newEnv(t, nil, WithReadPacer(reads), WithPacer(writes))
		e.srv.FailNext(graphtest.OpReadPresences, 1, 429, "1")
		start := time.Now()
		got, err := e.c.ReadPresences(ctxT(t), []string{aliceID})
		if err != nil || len(got) != 1 {
			t.Fatalf("ReadPresences = %v, %v; want one person after a retry", got, err)
		}
		if el := time.Since(start); el < 900*time.Millisecond {
			t.Errorf("answered after %s; want Retry-After (1s) honoured", el)
		}
		if n := len(e.srv.CallsOp(graphtest.OpReadPresences)); n != 2 {
			t.Errorf("calls = %d; want 2", n)
		}
		if reads.acquired != 2 || len(reads.pauses) != 1 || reads.pauses[0] != time.Second {
			t.Errorf("read pacer: %d slots, pauses %v; want 2 slots and one 1s pause", reads.acquired, reads.pauses)
		}
		if writes.acquired != 0 || len(writes.pauses) != 0 {
			t.Errorf("write pacer: %d slots, pauses %v; want untouched by reads", writes.acquired, writes.pauses)
		}
	})
	t.Run("403 permanent", func(t *testing.T) {
		e := newEnv(t, nil)
		e.srv.Inject(graphtest.Fault{Op: graphtest.OpReadPresences, Status: 403, ContentType: "application/json",
			Body: `{"error":{"code":"Forbidden","message":"Insufficient privileges to complete the operation."}}`})
		got, err := e.c.ReadPresences(ctxT(t), []string{aliceID})
		if len(got) != 0 || presence.KindOf(err) != presence.Permanent {
			t.Fatalf("ReadPresences = %v, %v; want nothing and a Permanent error", got, err)
		}
		pe := asPresenceError(t, err)
		if pe.Op != OpReadPresences || pe.Status != 403 || pe.Code != "Forbidden" {
			t.Errorf("error = %+v; want getPresencesByUserId 403 Forbidden", pe)
		}
		if n := len(e.srv.CallsOp(graphtest.OpReadPresences)); n != 1 {
			t.Errorf("calls = %d; want 1 (a 403 is not retried)", n)
		}
	})
	t.Run("one batch of two", func(t *testing.T) {
		e := newEnv(t, nil)
		ids := objectIDs(700)
		// Whichever batch comes first fails; the other is read.
		e.srv.Inject(graphtest.Fault{Op: graphtest.OpReadPresences, Status: 403})
		got, err := e.c.ReadPresences(ctxT(t), ids)
		var be *BatchError
		if !errors.As(err, &be) {
			t.Fatalf("ReadPresences error = %v; want a *BatchError", err)
		}
		if be.Batches != 2 || (len(be.IDs) != 650 && len(be.IDs) != 50) || !strings.Contains(err.Error(), fmt.Sprintf("batch %d of 2", be.Batch)) {
			t.Errorf("BatchError = batch %d of %d with %d ids, %q", be.Batch, be.Batches, len(be.IDs), err)
		}
		if len(got) != len(ids)-len(be.IDs) {
			t.Errorf("read %d people; want the %d of the batch that succeeded", len(got), len(ids)-len(be.IDs))
		}
		for _, id := range be.IDs {
			if _, ok := got[id]; ok {
				t.Errorf("%s of the failed batch is in the answer", id)
				break
			}
		}
		if presence.KindOf(err) != presence.Permanent {
			t.Errorf("KindOf = %s; want permanent", presence.KindOf(err))
		}
	})
	t.Run("canceled", func(t *testing.T) {
		e := newEnv(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		got, err := e.c.ReadPresences(ctx, objectIDs(10))
		if len(got) != 0 || presence.KindOf(err) != presence.Retry {
			t.Errorf("ReadPresences(canceled) = %v, %v; want nothing, Retry", got, err)
		}
	})
}

// pausingPacer lets every request go at once unless paused: enough to see
// which budget a 429 holds back.
type pausingPacer struct {
	mu     sync.Mutex
	until  time.Time
	slots  int
	paused int
}

func (p *pausingPacer) Acquire(ctx context.Context) (func(), error) {
	p.mu.Lock()
	wait := time.Until(p.until)
	p.slots++
	p.mu.Unlock()
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return func() {}, nil
}

func (p *pausingPacer) Pause(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused++
	if u := time.Now().Add(d); u.After(p.until) {
		p.until = u
	}
}

// TestSeparateBudgets: Graph counts presence reads and writes apart, and
// so does the client: reads throttled (429) hold back reads only, writes
// throttled hold back writes only.
func TestSeparateBudgets(t *testing.T) {
	reads, writes := &pausingPacer{}, &pausingPacer{}
	e := newEnv(t, nil, WithReadPacer(reads), WithPacer(writes))
	ctx := ctxT(t)

	// Reads throttled for 2 s: a read waits, a write does not.
	e.srv.FailNext(graphtest.OpReadPresences, 1, 429, "2")
	done := make(chan error, 1)
	go func() { _, err := e.c.ReadPresences(ctx, []string{aliceID}); done <- err }()
	if _, err := e.srv.WaitFor(ctx, func(c graphtest.Call) bool { return c.Op == graphtest.OpReadPresences && c.Status == 429 }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the client see the 429 and pause
	start := time.Now()
	if err := e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInACall, time.Hour); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("a write while reads are throttled took %s; want no wait", el)
	}
	if err := <-done; err != nil {
		t.Errorf("ReadPresences after the throttle = %v", err)
	}

	// Writes throttled for 2 s: a write waits, a read does not.
	e.srv.SetRateLimit(1, 2*time.Second)
	if err := e.c.ClearPresence(ctx, aliceID); err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- e.c.SetPresence(ctx, aliceID, presence.Busy, presence.ActivityInACall, time.Hour)
	}()
	if _, err := e.srv.WaitFor(ctx, func(c graphtest.Call) bool { return c.Op == graphtest.OpSetPresence && c.Status == 429 }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	start = time.Now()
	if _, err := e.c.ReadPresences(ctx, []string{aliceID}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("a read while writes are throttled took %s; want no wait", el)
	}
	if err := <-done; err != nil {
		t.Errorf("SetPresence after the throttle = %v", err)
	}
	reads.mu.Lock()
	writes.mu.Lock()
	defer reads.mu.Unlock()
	defer writes.mu.Unlock()
	if reads.paused != 1 || writes.paused != 1 {
		t.Errorf("pauses: reads %d, writes %d; want 1 and 1", reads.paused, writes.paused)
	}
	if reads.slots != 3 || writes.slots != 4 {
		t.Errorf("slots: reads %d, writes %d; want 3 (one retry) and 4 (one retry)", reads.slots, writes.slots)
	}
}

// BenchmarkReadPresences10k reads 10,000 people from a Graph that answers
// in 150 ms, as the real one does: at most 16 calls (650 ids each), in
// well under 3 s.
func BenchmarkReadPresences10k(b *testing.B) {
	srv := graphtest.NewServer(b)
	cfg := srv.Config()
	c, err := New(context.Background(), cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	ids := objectIDs(10000)
	for _, id := range ids[:5000] {
		srv.SetSession(graphtest.Session{User: id, Availability: presence.Busy, Activity: presence.ActivityInACall, Expires: srv.Now().Add(time.Hour)})
	}
	if err := c.Authenticate(ctx); err != nil {
		b.Fatal(err)
	}
	srv.Reset()
	srv.SetLatency(150 * time.Millisecond)
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		got, err := c.ReadPresences(ctx, ids)
		total += time.Since(start)
		if err != nil || len(got) != len(ids) {
			b.Fatalf("ReadPresences = %d people, %v", len(got), err)
		}
	}
	calls := len(srv.CallsOp(graphtest.OpReadPresences)) / b.N
	if calls > 16 {
		b.Errorf("%d calls per read of 10,000; want at most 16", calls)
	}
	b.ReportMetric(float64(calls), "calls/op")
	b.ReportMetric(total.Seconds()/float64(b.N), "s/read")
}
