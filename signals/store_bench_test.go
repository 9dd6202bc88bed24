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
	"sync"
	"sync/atomic"
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
// one after the other (parallel=1) or 16 × GOMAXPROCS at once, as when
// a large meeting ends and every participant's "left" comes together
// (parallel=16). inbox=none is the Handler without a store; bolt is
// the state file (one transaction, fsync'd); postgres the PostgreSQL store
// (one committed upsert, loopback). Each delivery names another person, so
// that every write is a new record. Reports the answer's latency (p50,
// p99) and the deliveries answered a second.
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
		for _, parallel := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/parallel=%d", tc.name, parallel), func(b *testing.B) {
				o := Options{ZoomSecret: zoomSecret, Sink: queuedSink{}}
				if tc.open != nil {
					o.Inbox = tc.open(b)
				}
				h := New(o)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { h.Run(ctx); close(done) }()
				defer func() { cancel(); <-done }()

				var (
					mu  sync.Mutex
					lat []time.Duration
					n   atomic.Int64
				)
				deliver := func() {
					i := n.Add(1)
					body := strings.Replace(template, "bob@contoso.com", fmt.Sprintf("p%d@contoso.com", i), 1)
					ts := strconv.FormatInt(time.Now().Unix(), 10)
					req := httptest.NewRequest(http.MethodPost, PathZoom, strings.NewReader(body))
					req.Header.Set("x-zm-request-timestamp", ts)
					req.Header.Set("x-zm-signature", ZoomSignature(zoomSecret, ts, []byte(body)))
					w := httptest.NewRecorder()
					start := time.Now()
					h.ServeHTTP(w, req)
					d := time.Since(start)
					if w.Code != http.StatusOK {
						b.Errorf("delivery %d = %d %s; want 200", i, w.Code, w.Body)
					}
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
				b.SetParallelism(parallel) // × GOMAXPROCS goroutines; 1: one at a time
				if parallel == 1 {
					for b.Loop() {
						deliver()
					}
				} else {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							deliver()
						}
					})
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
			})
		}
	}
}
