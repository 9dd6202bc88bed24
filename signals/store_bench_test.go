package signals

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/pgstate"
)

// queuedSink takes every signal as a standby does (signals.Queued): its
// record stays in the inbox, so that no delete competes with the writes
// measured.
type queuedSink struct{}

func (queuedSink) Signal(context.Context, state.Signal) (string, error) { return Queued, nil }

// BenchmarkDeliveryStored measures what keeping a signal before the 2xx
// costs a delivery (docs/webhooks.md, "stored before the 2xx"): a signed
// Zoom presence delivery (signals/testdata) through the Handler — header
// check, signature, parse, the Inbox's PutSignal, queue — answered 200,
// one after the other. inbox=none is the Handler without a store; bolt is
// the state file (one transaction, fsync'd); postgres the PostgreSQL store
// (one committed upsert, loopback). Each delivery names another person, so
// that every write is a new record. Reports the answer's latency: p50 and
// p99 besides the mean (ns/op).
func BenchmarkDeliveryStored(b *testing.B) {
	template := readTestdata(b, "zoom-presence-on-phone-call.json")
	for _, tc := range []struct {
		name string
		open func(b *testing.B) Store // nil: no inbox
	}{
		{"inbox=none", nil},
		{"inbox=bolt", func(b *testing.B) Store {
			st, err := state.Open(filepath.Join(b.TempDir(), "state.db"), 0)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		}},
		{"inbox=postgres", func(b *testing.B) Store {
			st, err := pgstate.Open(context.Background(), pgtest.DB(b), pgstate.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			o := Options{ZoomSecret: zoomSecret, Sink: queuedSink{}}
			if tc.open != nil {
				o.Inbox = tc.open(b)
			}
			h := New(o)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { h.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()

			lat := make([]time.Duration, 0, b.N)
			i := 0
			for b.Loop() {
				i++
				body := strings.Replace(template, "bob@contoso.com", fmt.Sprintf("p%d@contoso.com", i), 1)
				ts := strconv.FormatInt(time.Now().Unix(), 10)
				req := httptest.NewRequest(http.MethodPost, PathZoom, strings.NewReader(body))
				req.Header.Set("x-zm-request-timestamp", ts)
				req.Header.Set("x-zm-signature", ZoomSignature(zoomSecret, ts, []byte(body)))
				w := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(w, req)
				lat = append(lat, time.Since(start))
				if w.Code != http.StatusOK {
					b.Fatalf("delivery %d = %d %s; want 200", i, w.Code, w.Body)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
