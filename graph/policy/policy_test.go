package policy

import (
	"fmt"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/presence"
)

// TestClassify runs every status code that matters × every operation
// through Classify. The table is the documented policy (Classify's doc
// comment and docs/architecture.md): a change to either shows here.
func TestClassify(t *testing.T) {
	const (
		ok    = OK
		retry = presence.Retry
		hold  = presence.Permanent
		gone  = presence.NotFound
		auth  = presence.Unauthorized
	)
	codes := []int{200, 201, 204, 400, 401, 403, 404, 408, 409, 412, 429, 500, 502, 503, 504}
	want := map[string][]presence.Kind{
		//                      200 201 204 400    401   403    404   408    409    412    429    500    502    503    504
		OpSetPresence:        {ok, ok, ok, hold, auth, hold, gone, retry, retry, hold, retry, retry, retry, retry, retry},
		OpClearPresence:      {ok, ok, ok, retry, auth, retry, gone, retry, retry, retry, retry, retry, retry, retry, retry},
		OpSetStatusMessage:   {ok, ok, ok, hold, auth, hold, gone, retry, retry, hold, retry, retry, retry, retry, retry},
		OpClearStatusMessage: {ok, ok, ok, hold, auth, hold, gone, retry, retry, hold, retry, retry, retry, retry, retry},
		OpReadPresences:      {ok, ok, ok, hold, auth, hold, hold, retry, retry, hold, retry, retry, retry, retry, retry},
		OpResolveUser:        {ok, ok, ok, hold, auth, retry, gone, retry, retry, hold, retry, retry, retry, retry, retry},
		OpToken:              {ok, ok, ok, auth, auth, auth, auth, retry, auth, auth, retry, retry, retry, retry, retry},
	}
	if len(want) != len(Ops) {
		t.Fatalf("the table has %d operations; Ops has %d", len(want), len(Ops))
	}
	for _, op := range Ops {
		row, found := want[op]
		if !found || len(row) != len(codes) {
			t.Fatalf("no full row for %s", op)
		}
		for i, code := range codes {
			t.Run(fmt.Sprintf("%s/%d", op, code), func(t *testing.T) {
				if got := Classify(op, code); got != row[i] {
					t.Errorf("Classify(%q, %d) = %s; want %s", op, code, kindName(got), kindName(row[i]))
				}
			})
		}
	}
}

// TestRetryWithin: the middleware retries within a call only what
// Classify calls Retry, and of that only the causes that pass in seconds;
// a refused clear or lookup goes back to the caller.
func TestRetryWithin(t *testing.T) {
	for _, op := range Ops {
		for code := 200; code < 600; code++ {
			within := RetryWithin(op, code)
			transient := code == 408 || code == 409 || code == 429 || code >= 500
			if within && Classify(op, code) != presence.Retry {
				t.Errorf("RetryWithin(%q, %d) = true, but Classify = %s", op, code, kindName(Classify(op, code)))
			}
			if within != (transient && Classify(op, code) == presence.Retry) {
				t.Errorf("RetryWithin(%q, %d) = %v; want %v", op, code, within, !within)
			}
		}
	}
	if RetryWithin(OpClearPresence, 403) || RetryWithin(OpResolveUser, 403) {
		t.Error("a refused clear or lookup is retried within the call; want it back to the caller")
	}
}

func kindName(k presence.Kind) string {
	if k == OK {
		return "ok"
	}
	return k.String()
}

// TestClassifyEveryOtherCode: the rules hold beyond the table: every 2xx
// is ok, every 5xx retried, and no status of the range is left without a
// verdict of the five.
func TestClassifyEveryOtherCode(t *testing.T) {
	for _, op := range Ops {
		for code := 200; code < 600; code++ {
			got := Classify(op, code)
			switch {
			case code < 300 && got != OK:
				t.Errorf("Classify(%q, %d) = %s; want ok", op, code, kindName(got))
			case code >= 500 && got != presence.Retry:
				t.Errorf("Classify(%q, %d) = %s; want retry", op, code, kindName(got))
			case code >= 300 && got == OK:
				t.Errorf("Classify(%q, %d) = ok; want a failure", op, code)
			}
		}
	}
}

// TestBackoff: each delay lies between half and all of base·2^(tries-1),
// capped at Max; the curve reaches the cap and stays there.
func TestBackoff(t *testing.T) {
	b := Backoff{Base: time.Second, Max: 5 * time.Minute}
	for tries := 1; tries <= 40; tries++ {
		full := min(time.Second<<min(tries-1, 20), 5*time.Minute)
		for range 50 {
			if d := b.Delay(tries); d < full/2 || d > full {
				t.Fatalf("Delay(%d) = %v; want within [%v, %v]", tries, d, full/2, full)
			}
		}
	}
	if d := Delay(0); d < 500*time.Millisecond || d > time.Second {
		t.Errorf("Delay(0) = %v; want the first delay, within [500ms, 1s]", d)
	}
}

// TestWait: a Retry-After from Graph wins over the back-off.
func TestWait(t *testing.T) {
	err := fmt.Errorf("set: %w", &presence.Error{Op: OpSetPresence, Status: 429, Kind: presence.Retry, RetryAfter: 42 * time.Second})
	if got := Wait(err, 1); got != 42*time.Second {
		t.Errorf("Wait(429 with Retry-After 42s) = %v; want 42s", got)
	}
	plain := &presence.Error{Op: OpSetPresence, Status: 503, Kind: presence.Retry}
	if got := Wait(plain, 3); got < 2*time.Second || got > 4*time.Second {
		t.Errorf("Wait(503, 3 tries) = %v; want the back-off, within [2s, 4s]", got)
	}
}

// TestRate: the write rate comes from the configuration; no limit is the
// zero Rate.
func TestRate(t *testing.T) {
	if r := (Rate{N: 10000, Window: 30 * time.Second}); r.PerSecond() < 333.3 || r.PerSecond() > 333.4 {
		t.Errorf("10000 per 30s = %v/s; want 333.3", r.PerSecond())
	}
	if r := (Rate{}); r.Limited() || r.PerSecond() != 0 {
		t.Errorf("zero Rate: Limited %v, %v/s; want no limit", r.Limited(), r.PerSecond())
	}
	g := config.Default().Graph
	if r := WriteRate(g); r != (Rate{N: 10000, Window: 30 * time.Second}) {
		t.Errorf("WriteRate(default) = %+v; want 10000 per 30s", r)
	}
	g.RateLimit = 0
	if r := WriteRate(g); r.Limited() {
		t.Errorf("WriteRate(rate_limit 0) = %+v; want no limit", r)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2027, 3, 4, 15, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"-3", 0, false},
		{"soon", 0, false},
		{"Thu, 04 Mar 2027 15:02:00 GMT", 2 * time.Minute, true},
		{"Thursday, 04-Mar-27 15:00:30 GMT", 30 * time.Second, true},
		{"Thu Mar  4 15:00:10 2027", 10 * time.Second, true},
		{"Thu, 04 Mar 2027 14:00:00 GMT", 0, true},
	}
	for _, tt := range tests {
		got, ok := RetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("RetryAfter(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}
