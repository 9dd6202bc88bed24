package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/mem"
)

// damagedStore is a mem.Store whose file also holds a session record that
// does not decode, reported the way the state drivers report it.
type damagedStore struct {
	*mem.Store
	badKey string
}

func (d damagedStore) Sessions(ctx context.Context) (map[string]state.Session, error) {
	s, err := d.Store.Sessions(ctx)
	if err != nil {
		return nil, err
	}
	return s, &state.BadRecordsError{Records: []state.BadRecord{
		{Bucket: "sessions", Key: d.badKey, Err: errors.New("invalid character 'x' looking for beginning of value")},
	}}
}

// TestEngineSkipsUndecodableSession: one damaged session record must not
// stop reconciling for everyone. Alice's meeting is set and cleared on time
// and the damaged key is reported.
func TestEngineSkipsUndecodableSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		feeds := &fakeFeeds{bodies: map[string]string{"zoom": ics(begin, "m", 10*time.Minute, 3*time.Minute)}, errs: map[string]error{}}
		graph := &testutil.Presence{Begin: begin}
		h := &harness{t: t, feeds: feeds, graph: graph, store: mem.New(), begin: begin, metrics: NewMetrics(nil)}
		h.startWith(testConfig(), func(o *Options) { o.Store = damagedStore{h.store, "mallory@contoso.com"} }, nil)
		h.until(time.Hour)
		h.stop()
		logs := &h.logs

		want := []string{"10m0s set alice@contoso.com InAConferenceCall 5m0s", "13m0s clear alice@contoso.com"}
		if got := graph.Got(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("Graph calls with a damaged session record:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		warned := logs.Lines(`"level":"WARN"`, "skipped session records", "mallory@contoso.com")
		if len(warned) == 0 {
			t.Errorf("no warning naming the damaged record; logs:\n%s", logs.String())
		}
		if failed := logs.Lines(`"msg":"read sessions"`); len(failed) > 0 {
			t.Errorf("the damaged record failed a pass: %s", failed[0])
		}
	})
}
