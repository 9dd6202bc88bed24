package graph

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/microsoftgraph/msgraph-sdk-go/communications"
	"github.com/microsoftgraph/msgraph-sdk-go/models"

	"github.com/calpresence/calpresence/graph/policy"
	"github.com/calpresence/calpresence/presence"
)

// OpReadPresences is the operation name of ReadPresences' calls in
// *presence.Error.Op.
const OpReadPresences = policy.OpReadPresences

// MaxPresenceIDs is the most ids Graph's getPresencesByUserId accepts in
// one call (Graph docs: "Maximum of 650 user IDs are supported per API
// request"); more is answered 400.
const MaxPresenceIDs = 650

// readConcurrency bounds the getPresencesByUserId calls of one
// ReadPresences in flight at once: 10,000 people are 16 calls, 4 rounds at
// Graph's ~150 ms, and the read pacer still sees every attempt. More
// would take connections from the writes for little gain.
const readConcurrency = 4

// ErrDryRun is what ReadPresences returns in dry run: the client sends
// nothing, and a dry run sets nothing, so there is nothing in Teams to
// judge it by.
var ErrDryRun = errors.New("graph: dry run: presence is not read")

// BatchError is one failed getPresencesByUserId call of ReadPresences.
// Err is the call's *presence.Error, so presence.KindOf sees through it.
type BatchError struct {
	Batch   int      // 1-based
	Batches int      // how many calls the read took
	IDs     []string // the ids the call asked for, none of which was read
	Err     error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("read presence batch %d of %d (%d ids from %s): %v", e.Batch, e.Batches, len(e.IDs), e.IDs[0], e.Err)
}

func (e *BatchError) Unwrap() error { return e.Err }

// ReadPresences returns what Teams shows for each of ids (Entra object
// ids), keyed by the id as given: POST /communications/getPresencesByUserId
// with at most MaxPresenceIDs ids a call, never one GET per person. The
// calls run a few at a time (readConcurrency), each attempt paced by the
// read pacer (WithReadPacer, Graph's 1,500 calls per 30 s apart from the
// writes') and classified and retried like every other call.
//
// Duplicates (in any letter case) and empty ids are asked for once or not
// at all. A failed call does not spoil the others: the map holds every id
// that was read, and the error joins one *BatchError per failed call. An
// id Graph leaves out of its answer is not in the map either: unknown, not
// Offline.
//
// In dry run it returns ErrDryRun and reads nothing.
func (c *Client) ReadPresences(ctx context.Context, ids []string) (map[string]presence.Shown, error) {
	if c.dryRun {
		return nil, ErrDryRun
	}
	batches := batchIDs(ids, MaxPresenceIDs)
	out := make(map[string]presence.Shown, len(ids))
	if len(batches) == 0 {
		return out, nil
	}
	var (
		mu   sync.Mutex
		errs = make([]error, len(batches))
		wg   sync.WaitGroup
		sem  = make(chan struct{}, readConcurrency)
	)
	for i, b := range batches {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			errs[i] = &BatchError{Batch: i + 1, Batches: len(batches), IDs: b,
				Err: classify(OpReadPresences, "", ctx.Err(), nil, c.now())}
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			got, err := c.readBatch(ctx, b)
			if err != nil {
				errs[i] = &BatchError{Batch: i + 1, Batches: len(batches), IDs: b, Err: err}
				return
			}
			mu.Lock()
			for id, s := range got {
				out[id] = s
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// batchIDs splits ids into batches of at most n, without empty ids and
// without repeating an id (object ids compare without regard to case).
func batchIDs(ids []string, n int) [][]string {
	seen := make(map[string]bool, len(ids))
	var out [][]string
	var cur []string
	for _, id := range ids {
		k := strings.ToLower(strings.TrimSpace(id))
		if k == "" || seen[k] {
			continue
		}
		seen[k] = true
		if len(cur) == n {
			out = append(out, cur)
			cur = nil
		}
		cur = append(cur, id)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// readBatch is one getPresencesByUserId call; the answer is keyed by the
// ids as asked (Graph may spell them in another case).
func (c *Client) readBatch(ctx context.Context, ids []string) (map[string]presence.Shown, error) {
	asked := make(map[string]string, len(ids))
	for _, id := range ids {
		asked[strings.ToLower(strings.TrimSpace(id))] = id
	}
	out := make(map[string]presence.Shown, len(ids))
	err := c.do(ctx, OpReadPresences, "", func(ctx context.Context) error {
		body := communications.NewGetPresencesByUserIdPostRequestBody()
		body.SetIds(ids)
		res, err := c.presences().PostAsGetPresencesByUserIdPostResponse(ctx, body, nil)
		if err != nil || res == nil {
			return err
		}
		for _, p := range res.GetValue() {
			if p == nil || p.GetId() == nil {
				continue
			}
			if id, ok := asked[strings.ToLower(*p.GetId())]; ok {
				out[id] = shown(p)
			}
		}
		return nil
	})
	return out, err
}

// shown converts one presence of Graph's answer.
func shown(p models.Presenceable) presence.Shown {
	var s presence.Shown
	s.Availability = deref(p.GetAvailability())
	s.Activity = deref(p.GetActivity())
	if o := p.GetOutOfOfficeSettings(); o != nil && o.GetIsOutOfOffice() != nil {
		s.OutOfOffice = *o.GetIsOutOfOffice()
	}
	sm := p.GetStatusMessage()
	if sm == nil {
		return s
	}
	if m := sm.GetMessage(); m != nil {
		s.StatusMessage = deref(m.GetContent())
	}
	if e := sm.GetExpiryDateTime(); e != nil && s.StatusMessage != "" {
		s.MessageExpires = parseDateTimeZone(deref(e.GetDateTime()), deref(e.GetTimeZone()))
	}
	return s
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// parseDateTimeZone reads a dateTimeTimeZone in UTC or an IANA zone; zero
// for anything else (a Windows zone name, a malformed time): the caller
// treats the expiry as unknown.
func parseDateTimeZone(dt, tz string) time.Time {
	if dt == "" {
		return time.Time{}
	}
	loc := time.UTC
	if tz != "" && !strings.EqualFold(tz, "UTC") {
		l, err := time.LoadLocation(tz)
		if err != nil {
			return time.Time{}
		}
		loc = l
	}
	for _, layout := range []string{"2006-01-02T15:04:05.9999999", time.RFC3339Nano} {
		if t, err := time.ParseInLocation(layout, dt, loc); err == nil {
			return t
		}
	}
	return time.Time{}
}
