package signals

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/calpresence/calpresence/state"
)

// memInbox is a Store in memory that can refuse writes.
type memInbox struct {
	mu   sync.Mutex
	m    map[string]state.Signal
	fail bool
}

func (s *memInbox) Signals(ctx context.Context) (map[string]state.Signal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.m), nil
}
func (s *memInbox) QueuedSignals(ctx context.Context) (map[string]state.Signal, error) {
	return s.Signals(ctx)
}
func (s *memInbox) PutSignal(ctx context.Context, sig state.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("disk full")
	}
	if s.m == nil {
		s.m = make(map[string]state.Signal)
	}
	s.m[sig.ID] = sig
	return nil
}
func (s *memInbox) DeleteSignal(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}
func (s *memInbox) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// resultSink answers every signal with res.
type resultSink struct {
	res  string
	seen chan state.Signal
}

func (s *resultSink) Signal(ctx context.Context, sig state.Signal) (string, error) {
	s.seen <- sig
	return s.res, nil
}

// TestStoredBeforeAnswered: with an Inbox, a signal is stored before the
// vendor's 200, and 503 when the store cannot take it; its record is
// dropped once the engine took it, kept while it is pending.
func TestStoredBeforeAnswered(t *testing.T) {
	body := readTestdata(t, "zoom-presence-on-phone-call.json")
	for _, res := range []string{Applied, Pending} {
		t.Run(res, func(t *testing.T) {
			inbox := &memInbox{}
			sink := &resultSink{res: res, seen: make(chan state.Signal, 1)}
			m := NewMetrics(nil)
			h := New(Options{ZoomSecret: zoomSecret, Sink: sink, Inbox: inbox, Metrics: m, Now: func() time.Time { return now }})
			r := &rig{h: h, m: m}

			inbox.fail = true
			if w := r.zoom(body, now); w.Code != http.StatusServiceUnavailable {
				t.Errorf("POST with the store refusing = %d; want 503", w.Code)
			}
			if got := testutil.ToFloat64(m.Signals.WithLabelValues("zoom", "presence", "unstored")); got != 1 {
				t.Errorf("unstored deliveries = %v; want 1", got)
			}
			inbox.fail = false
			if w := r.zoom(body, now); w.Code != http.StatusOK {
				t.Fatalf("POST = %d; want 200", w.Code)
			}
			if n := inbox.len(); n != 1 {
				t.Fatalf("inbox holds %d signals when answered; want 1", n)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { h.Run(ctx); close(done) }()
			<-sink.seen
			cancel()
			<-done
			want := 0
			if res == Pending {
				want = 1
			}
			if n := inbox.len(); n != want {
				t.Errorf("inbox holds %d signals after the sink answered %s; want %d", n, res, want)
			}
		})
	}
}

func (s *memInbox) Signal(ctx context.Context, id string) (state.Signal, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sig, ok := s.m[id]
	return sig, ok, nil
}

// TestWebexInstanceShared: the meeting of a Webex meeting instance lives
// in the store: a participant's "left" received by another replica (or
// after a restart: a new Handler) still links to the meeting.
func TestWebexInstanceShared(t *testing.T) {
	inbox := &memInbox{}
	started := strings.NewReplacer(`"event":"ended"`, `"event":"started"`, `"end":"2026-12-02T15:18:00Z",`, ``, `"state":"ended"`, `"state":"started"`).Replace(webexEnded)
	first := New(Options{WebexSecret: webexSecret, Sink: &sink{seen: make(chan struct{}, 1)}, Inbox: inbox, Now: func() time.Time { return now }})
	(&rig{h: first}).post(PathWebex, started, map[string]string{"X-Spark-Signature": webexSign(started)})

	r := &rig{sink: &sink{seen: make(chan struct{}, 10)}, m: NewMetrics(nil)}
	r.h = New(Options{WebexSecret: webexSecret, Sink: r.sink, Inbox: inbox, Metrics: r.m, Now: func() time.Time { return now }})
	if w := r.post(PathWebex, webexLeft, map[string]string{"X-Spark-Signature": webexSign(webexLeft)}); w.Code != http.StatusOK {
		t.Fatalf("POST meetingParticipants/left = %d; want 200", w.Code)
	}
	got := r.drain(t, 1)
	if len(got) != 1 || got[0].Meeting != "webex:25501234567" {
		t.Errorf("signals = %+v; want the left linked to webex:25501234567", got)
	}
}
