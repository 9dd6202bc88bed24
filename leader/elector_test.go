package leader

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fast are the timings of the tests: short, yet with room for a loaded
// 2-core machine running the race detector (a check may take up to 1 s
// before the leader fences itself).
var fast = Options{
	Retry:         200 * time.Millisecond,
	Check:         200 * time.Millisecond,
	CheckTimeout:  time.Second,
	ServerTimeout: 3 * time.Second,
}

func (o Options) lease() time.Duration { return o.Check + o.CheckTimeout }

// span is one term of acting as leader: from lead's call to its context's end.
type span struct{ start, stop time.Time }

// replica runs one Elector in the background and records when it acted.
type replica struct {
	t    *testing.T
	e    *Elector
	logs *testutil.LogBuffer
	reg  *prometheus.Registry

	cancel context.CancelFunc
	done   chan error

	mu    sync.Mutex
	spans []span
	calls atomic.Int32
}

// startReplica runs an Elector called id on dsn. lead, if not nil, runs
// inside the recorded span.
func startReplica(t *testing.T, dsn, id string, o Options, lead func(ctx context.Context, call int) error) *replica {
	t.Helper()
	r := &replica{t: t, logs: &testutil.LogBuffer{}, reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	o.ID = id
	o.Logger = slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.Registerer = r.reg
	e, err := New(dsn, o)
	if err != nil {
		t.Fatalf("New(%s) = %v", id, err)
	}
	r.e = e
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.done <- e.Run(ctx, func(ctx context.Context) error {
			call := int(r.calls.Add(1))
			r.mu.Lock()
			r.spans = append(r.spans, span{start: time.Now()})
			i := len(r.spans) - 1
			r.mu.Unlock()
			var err error
			if lead != nil {
				err = lead(ctx, call)
			} else {
				<-ctx.Done()
			}
			// The span ends when lead returns (after its context ended):
			// a little later than the fence, never earlier.
			stop := time.Now()
			r.mu.Lock()
			r.spans[i].stop = stop
			r.mu.Unlock()
			return err
		})
	}()
	t.Cleanup(func() {
		r.stop()
		e.Close()
		if t.Failed() {
			t.Logf("logs of %s:\n%s", id, r.logs.String())
		}
	})
	return r
}

// stop cancels Run and waits for it; it may be called more than once.
func (r *replica) stop() {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			r.t.Errorf("Run(%s) = %v; want nil", r.e.ID(), err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(10 * time.Second):
		r.t.Errorf("Run(%s) did not return within 10s of its context's end", r.e.ID())
	}
}

func (r *replica) getSpans() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans)
}

// lastSpan returns the latest term, and whether there is one.
func (r *replica) lastSpan() (span, bool) {
	s := r.getSpans()
	if len(s) == 0 {
		return span{}, false
	}
	return s[len(s)-1], true
}

func (r *replica) metric(name string, labels ...string) float64 {
	r.t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		r.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
					return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}) {
					continue metrics
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	r.t.Fatalf("no metric %s%q", name, labels)
	return 0
}

// waitLeading waits until exactly r leads among all, and returns when its
// current span started.
func waitLeading(t *testing.T, within time.Duration, r *replica, all ...*replica) time.Time {
	t.Helper()
	var s span
	if !testutil.WaitUntil(within, func() bool {
		var ok bool
		s, ok = r.lastSpan()
		return ok && s.stop.IsZero() && r.e.Leading()
	}) {
		t.Fatalf("%s not leading after %v (role %s)", r.e.ID(), within, r.e.Role())
	}
	for _, o := range all {
		if o != r && o.e.Leading() {
			t.Fatalf("%s and %s both lead", r.e.ID(), o.e.ID())
		}
	}
	return s.start
}

// refusals counts r's tries of the lock that another replica's lock
// refused (the first is logged at Info, the others at Debug), or that
// failed with the same error again.
func (r *replica) refusals() int {
	return len(r.logs.Lines("another replica leads")) +
		len(r.logs.Lines("leader lock held by another replica; trying again")) +
		len(r.logs.Lines("cannot try the leader lock"))
}

// waitRefused waits until r has tried the lock n more times than it had
// when called and was refused each time, checking on the way that ok
// holds (it fails the test when ok does not). It replaces sleeping for
// "a few Retry": the tries are what the tests wait for, and a loaded
// machine only makes them slower.
func waitRefused(t *testing.T, r *replica, n int, ok func() error) {
	t.Helper()
	from := r.refusals()
	var broke error
	if !testutil.WaitUntil(10*time.Second+time.Duration(n)*r.e.retry, func() bool {
		if ok != nil {
			if broke = ok(); broke != nil {
				return true
			}
		}
		return r.refusals() >= from+n
	}) {
		t.Fatalf("%s tried the lock %d times in %v; want %d refusals (role %s)", r.e.ID(), r.refusals()-from, 10*time.Second+time.Duration(n)*r.e.retry, n, r.e.Role())
	}
	if broke != nil {
		t.Fatal(broke)
	}
}

// noOverlap fails the test if two replicas ever acted at once.
func noOverlap(t *testing.T, rs ...*replica) {
	t.Helper()
	type named struct {
		span
		id string
	}
	var all []named
	for _, r := range rs {
		for _, s := range r.getSpans() {
			if s.stop.IsZero() {
				s.stop = time.Now().Add(time.Hour)
			}
			all = append(all, named{s, r.e.ID()})
		}
	}
	slices.SortFunc(all, func(a, b named) int { return a.start.Compare(b.start) })
	for i := 1; i < len(all); i++ {
		if p, c := all[i-1], all[i]; !p.stop.Before(c.start) {
			t.Errorf("%s acted from %s to %s, overlapping %s from %s", p.id, p.start.Format(time.StampMicro), p.stop.Format(time.StampMicro), c.id, c.start.Format(time.StampMicro))
		}
	}
}

func admin(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func backendPID(t *testing.T, c *pgx.Conn, id string) int {
	t.Helper()
	var pid int
	if err := c.QueryRow(context.Background(), "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()", appPrefix+id).Scan(&pid); err != nil {
		t.Fatalf("backend of %s: %v", id, err)
	}
	return pid
}

func TestOneLeader(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	a := startReplica(t, dsn, "a", fast, nil)
	b := startReplica(t, dsn, "b", fast, nil)
	if !testutil.WaitUntil(10*time.Second, func() bool { return a.e.Leading() || b.e.Leading() }) {
		t.Fatal("nobody leads after 10s")
	}
	ld, sb := a, b
	if b.e.Leading() {
		ld, sb = b, a
	}
	waitLeading(t, 5*time.Second, ld, a, b)
	// While the standby tries a few times, exactly one leads, and every
	// view agrees.
	waitRefused(t, sb, 3, func() error {
		if !ld.e.Leading() || sb.e.Leading() {
			return fmt.Errorf("Leading: %s %v, %s %v; want true, false", ld.e.ID(), ld.e.Leading(), sb.e.ID(), sb.e.Leading())
		}
		return nil
	})
	if err := ld.e.IsLeader(context.Background()); err != nil {
		t.Errorf("%s.IsLeader = %v; want nil", ld.e.ID(), err)
	}
	if err := sb.e.IsLeader(context.Background()); !errors.Is(err, ErrNotLeader) {
		t.Errorf("%s.IsLeader = %v; want ErrNotLeader", sb.e.ID(), err)
	}
	if got := ld.e.Role(); got != "leader" {
		t.Errorf("%s.Role() = %q; want leader", ld.e.ID(), got)
	}
	if got := sb.e.Role(); got != "standby" {
		t.Errorf("%s.Role() = %q; want standby", sb.e.ID(), got)
	}
	for _, r := range []*replica{ld, sb} {
		id, since, err := r.e.Leader(context.Background())
		if err != nil || id != ld.e.ID() || since.IsZero() || since.After(time.Now()) {
			t.Errorf("%s.Leader() = %q, %v, %v; want %q, a time in the past, nil", r.e.ID(), id, since, err, ld.e.ID())
		}
	}
	for _, c := range []struct {
		r    *replica
		name string
		want float64
	}{
		{ld, "calpresence_leader", 1}, {sb, "calpresence_leader", 0},
		{ld, "calpresence_leader_takeovers_total", 1}, {sb, "calpresence_leader_takeovers_total", 0},
	} {
		if got := c.r.metric(c.name); got != c.want {
			t.Errorf("%s: %s = %v; want %v", c.r.e.ID(), c.name, got, c.want)
		}
	}
	if got := sb.logs.Lines("another replica leads", `"leader":"`+ld.e.ID()+`"`); len(got) != 1 {
		t.Errorf("standby logged %q; want one line naming %s", got, ld.e.ID())
	}
	noOverlap(t, a, b)
}

func TestHandOverWhenRunEnds(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	o := fast
	o.Key = -7 // a negative key splits into pg_locks' classid/objid like any other
	a := startReplica(t, dsn, "a", o, nil)
	waitLeading(t, 10*time.Second, a)
	b := startReplica(t, dsn, "b", o, nil)
	waitRefused(t, b, 2, nil)
	if b.e.Leading() {
		t.Fatal("b leads while a holds the lock")
	}
	t0 := time.Now()
	a.stop()
	if a.e.Leading() {
		t.Error("a still Leading after Run returned")
	}
	start := waitLeading(t, 10*time.Second, b, a)
	// The lock is free at once; b finds it within Retry, then waits a lease.
	took := start.Sub(t0)
	t.Logf("hand-over took %v (Retry %v + grace %v)", took, o.Retry, o.lease())
	if took < o.lease() || took > o.Retry+o.lease()+3*time.Second {
		t.Errorf("hand-over took %v; want between the grace %v and Retry+grace+3s", took, o.lease())
	}
	if got := a.metric("calpresence_leader"); got != 0 {
		t.Errorf("a: calpresence_leader = %v after Run returned; want 0", got)
	}
	if id, _, err := b.e.Leader(context.Background()); err != nil || id != "b" {
		t.Errorf("b.Leader() = %q, %v; want b", id, err)
	}
	noOverlap(t, a, b)
}

func TestFenceWhenBackendTerminated(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	a := startReplica(t, dsn, "a", fast, nil)
	waitLeading(t, 10*time.Second, a)
	b := startReplica(t, dsn, "b", fast, nil)
	adm := admin(t, dsn)
	pid := backendPID(t, adm, "a")
	waitRefused(t, b, 1, nil) // b is standing by
	t0 := time.Now()
	if _, err := adm.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	// a finds out at its next check: within a lease.
	var s span
	if !testutil.WaitUntil(10*time.Second, func() bool { s, _ = a.lastSpan(); return !s.stop.IsZero() }) {
		t.Fatal("a's lead context not cancelled 10s after its backend was terminated")
	}
	if a.e.Leading() {
		t.Error("a.Leading() = true after its lead context ended")
	}
	stopped := s.stop.Sub(t0)
	t.Logf("a stopped %v after its backend was terminated (lease %v)", stopped, fast.lease())
	if stopped > fast.lease()+2*time.Second {
		t.Errorf("a stopped %v after losing its backend; want within the lease %v (+2s slack)", stopped, fast.lease())
	}
	if got := a.metric("calpresence_leader_fenced_total", "reason", "check_failed"); got != 1 {
		t.Errorf("a: fenced_total{check_failed} = %v; want 1", got)
	}
	if got := a.logs.Lines(`"level":"ERROR"`, "stopped acting", "check_failed"); len(got) != 1 {
		t.Errorf("a logged %q; want one error saying why it stopped", got)
	}
	start := waitLeading(t, 10*time.Second, b, a)
	t.Logf("b leads %v after the termination", start.Sub(t0))
	if !s.stop.Before(start) {
		t.Errorf("a stopped at %s, not before b started at %s", s.stop.Format(time.StampMicro), start.Format(time.StampMicro))
	}
	noOverlap(t, a, b)
}

func TestLeadErrorReleasesTheLock(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	boom := errors.New("boom")
	standingBy := make(chan struct{}) // b has been refused once
	a := startReplica(t, dsn, "a", fast, func(ctx context.Context, call int) error {
		if call == 1 {
			select {
			case <-standingBy:
			case <-ctx.Done():
			}
			return boom
		}
		<-ctx.Done()
		return nil
	})
	waitLeading(t, 10*time.Second, a)
	b := startReplica(t, dsn, "b", fast, nil)
	waitRefused(t, b, 1, nil)
	close(standingBy)
	// a's first term ends in an error: it releases, pauses 2×Retry, and b
	// (trying every Retry) takes the lock.
	if !testutil.WaitUntil(10*time.Second, func() bool { s, ok := a.lastSpan(); return ok && !s.stop.IsZero() }) {
		t.Fatal("a's failing lead never returned")
	}
	waitLeading(t, 10*time.Second, b, a)
	if got := a.logs.Lines(`"level":"ERROR"`, "lead failed", "boom"); len(got) != 1 {
		t.Errorf("a logged %q; want one error with lead's", got)
	}
	// And a takes it again once b goes.
	b.stop()
	waitLeading(t, 10*time.Second, a, b)
	if got := a.calls.Load(); got != 2 {
		t.Errorf("a led %d times; want 2", got)
	}
	if got := a.metric("calpresence_leader_takeovers_total"); got != 2 {
		t.Errorf("a: takeovers_total = %v; want 2", got)
	}
	if got := a.metric("calpresence_leader_fenced_total", "reason", "check_failed"); got != 0 {
		t.Errorf("a: fenced_total{check_failed} = %v after stepping down; want 0", got)
	}
	noOverlap(t, a, b)
}

func TestLeadErrorAloneLeadsAgain(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	a := startReplica(t, dsn, "a", fast, func(ctx context.Context, call int) error {
		if call == 1 {
			return errors.New("boom")
		}
		<-ctx.Done()
		return nil
	})
	adm := admin(t, dsn)
	hi, lo := (&Elector{key: DefaultKey}).keyHalves()
	held := func() bool {
		var n int
		if err := adm.QueryRow(context.Background(), "SELECT count(*) FROM pg_locks l WHERE "+lockWhere, hi, lo).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	if !testutil.WaitUntil(10*time.Second, func() bool { s, ok := a.lastSpan(); return ok && !s.stop.IsZero() }) {
		t.Fatal("a's failing lead never returned")
	}
	if !testutil.WaitUntil(2*time.Second, func() bool { return !held() }) {
		t.Error("lock still held after lead returned an error")
	}
	waitLeading(t, 10*time.Second, a)
	if !held() {
		t.Error("a leads again but pg_locks shows no lock")
	}
}

func TestLeaderWhenNobodyLeads(t *testing.T) {
	t.Parallel()
	e, err := New(pgtest.DB(t), Options{ID: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if id, since, err := e.Leader(context.Background()); id != "" || !since.IsZero() || err != nil {
		t.Errorf("Leader() = %q, %v, %v; want \"\", zero, nil", id, since, err)
	}
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	a := startReplica(t, dsn, "a", fast, nil)
	waitLeading(t, 10*time.Second, a)
	if err := a.e.Run(context.Background(), nil); err == nil {
		t.Error("second Run at once = nil; want an error")
	}
	if !a.e.Leading() {
		t.Error("a stopped leading after a refused second Run")
	}
}

func TestNewErrorsHidePassword(t *testing.T) {
	for _, dsn := range []string{
		"postgres://u:s3cret@host:badport/db",
		"postgres://u:s3cret@host/db?connect_timeout=x",
		"host=h password=s3cret connect_timeout=x",
		"host=h password='s3cret x' port=x",
	} {
		_, err := New(dsn, Options{})
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("New(%q) = %v; want an error without the password", dsn, err)
		}
	}
}

func TestConnectFailuresHidePassword(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(pgtest.ServerDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("calpresence", "s3cret-wrong")
	for _, dsn := range []string{u.String(), "host=127.0.0.1 port=1 user=calpresence password=s3cret-wrong connect_timeout=1"} {
		r := startReplica(t, dsn, "a", fast, nil)
		if !testutil.WaitUntil(10*time.Second, func() bool { return len(r.logs.Lines("cannot try the leader lock")) > 0 }) {
			t.Fatalf("no failure logged for %s", dsn)
		}
		if _, _, err := r.e.Leader(context.Background()); err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Leader() = %v; want an error without the password", err)
		}
		r.stop()
		if logs := r.logs.String(); strings.Contains(logs, "s3cret") {
			t.Errorf("logs show the password:\n%s", logs)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{Check: time.Second, CheckTimeout: 8 * time.Second}, "server_timeout: must exceed check+check_timeout (9s)"},
		{Options{Retry: 10 * time.Second}, "retry: must be shorter than server_timeout (8s)"},
		{Options{Check: -time.Second}, "check: must be positive"},
		{Options{ServerTimeout: 500 * time.Millisecond, Check: 100 * time.Millisecond, CheckTimeout: 100 * time.Millisecond, Retry: 100 * time.Millisecond}, "server_timeout: must be at least 1s"},
	} {
		_, err := New("postgres://u@h/db", tt.o)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v; want an error containing %q", tt.o, err, tt.want)
		}
	}
	if _, err := New("postgres://u@h/db", Options{}); err != nil {
		t.Errorf("New with defaults = %v", err)
	}
}

func TestAppName(t *testing.T) {
	long := strings.Repeat("é", 40) // 80 bytes
	got := appName(long)
	if len(got) > 63 || !strings.HasPrefix(got, appPrefix) || !strings.HasPrefix(appPrefix+long, got) || strings.ToValidUTF8(got, "?") != got {
		t.Errorf("appName(%q) = %q; want a valid prefix of at most 63 bytes", long, got)
	}
	if got := appName("a"); got != "calpresence/a" {
		t.Errorf(`appName("a") = %q; want "calpresence/a"`, got)
	}
}

func TestDefaultKey(t *testing.T) {
	h := fnv.New64a()
	h.Write([]byte("calpresence"))
	if got := int64(h.Sum64()); got != DefaultKey {
		t.Errorf("FNV-1a of calpresence = %d; DefaultKey = %d", got, DefaultKey)
	}
}

// checkLock finds exactly this session's lock on exactly this key, for keys
// of either sign (pg_locks splits a bigint key into two oids), and only on
// the server backend that took it.
func TestCheckLock(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	ctx := context.Background()
	for _, key := range []int64{DefaultKey, -7, 1, -1 << 63} {
		e, err := New(dsn, Options{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		mine := admin(t, dsn)
		var pid int32
		if err := mine.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		cfg.RuntimeParams["application_name"] = "calpresence/other"
		other, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close(ctx)
		due := func() time.Time { return time.Now().Add(5 * time.Second) }
		exec := func(c *pgx.Conn, sql string, key int64) {
			t.Helper()
			if _, err := c.Exec(ctx, sql, key); err != nil {
				t.Fatal(err)
			}
		}

		if err := e.checkLock(mine, pid, due()); !errors.Is(err, errLockLost) {
			t.Errorf("key %d, not locked: checkLock = %v; want errLockLost", key, err)
		}
		exec(mine, "SELECT pg_advisory_lock($1)", key^1)
		if err := e.checkLock(mine, pid, due()); !errors.Is(err, errLockLost) {
			t.Errorf("key %d, a neighbouring key locked: checkLock = %v; want errLockLost", key, err)
		}
		exec(other, "SELECT pg_advisory_lock($1)", key)
		if err := e.checkLock(mine, pid, due()); !errors.Is(err, errLockLost) {
			t.Errorf("key %d, locked by another session: checkLock = %v; want errLockLost", key, err)
		}
		if id, since, err := e.holder(ctx, mine); err != nil || id != "other" || since.IsZero() {
			t.Errorf("key %d: holder = %q, %v, %v; want other, its session start, nil", key, id, since, err)
		}
		exec(other, "SELECT pg_advisory_unlock($1)", key)
		exec(mine, "SELECT pg_advisory_lock($1)", key)
		if err := e.checkLock(mine, pid, due()); err != nil {
			t.Errorf("key %d, locked by this session: checkLock = %v; want nil", key, err)
		}
		// The lock is held, but by the backend the session was on, no
		// longer by the one it is on now (a pooler moved it).
		if err := e.checkLock(mine, pid+1, due()); !errors.Is(err, errLockLost) || !strings.Contains(err.Error(), "pooler in transaction mode") {
			t.Errorf("key %d, the session on another backend than the one that took the lock: checkLock = %v; want errLockLost naming the pooler", key, err)
		}
	}
}

// tryLock refuses a lock that the session's server backend holds already
// (a pooler's other client took it there) rather than take it again.
func TestTryLockOnABackendThatHoldsIt(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	e, err := New(dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := admin(t, dsn)
	got, pid, err := e.tryLock(c)
	if err != nil || !got || pid == 0 {
		t.Fatalf("tryLock on a free lock = %v, %d, %v; want true, the backend's pid, nil", got, pid, err)
	}
	got, pid2, err := e.tryLock(c)
	if err == nil || got || pid2 != pid || !strings.Contains(err.Error(), "holds it already") || !strings.Contains(err.Error(), "PgBouncer") {
		t.Errorf("tryLock on a backend that holds the lock = %v, %d, %v; want false, %d, an error naming PgBouncer", got, pid2, err, pid)
	}
	var n int
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'").Scan(&n); err != nil || n != 1 {
		t.Errorf("advisory locks of the backend = %d, %v; want 1", n, err)
	}
	// Taken once: one unlock frees it.
	var was bool
	if err := c.QueryRow(context.Background(), "SELECT pg_advisory_unlock($1)", e.key).Scan(&was); err != nil || !was {
		t.Fatalf("unlock = %v, %v", was, err)
	}
	if err := c.QueryRow(context.Background(), "SELECT pg_advisory_unlock($1)", e.key).Scan(&was); err != nil || was {
		t.Errorf("a second unlock = %v, %v; want false (the lock was taken once)", was, err)
	}
}

// checkSettings refuses a lock session whose server session lacks the
// settings it asked for.
func TestCheckSettings(t *testing.T) {
	cfg, err := pgx.ParseConfig("postgres://u@h/db")
	if err != nil {
		t.Fatal(err)
	}
	want := sessionConfig(cfg, "a", 8*time.Second, true).RuntimeParams
	applied := map[string]string{"idle_session_timeout": "8000", "tcp_keepalives_idle": "4", "tcp_keepalives_interval": "1", "tcp_keepalives_count": "4", "tcp_user_timeout": "8000"}
	with := func(name, v string) map[string]string {
		m := maps.Clone(applied)
		m[name] = v
		return m
	}
	for _, tt := range []struct {
		name string
		got  map[string]string
		bad  string // "" when accepted
	}{
		{"all applied", applied, ""},
		{"no keepalives on this socket", with("tcp_keepalives_idle", "0"), ""},
		{"no tcp_user_timeout on this platform", with("tcp_user_timeout", "0"), ""},
		{"idle_session_timeout dropped", with("idle_session_timeout", "0"), "idle_session_timeout is 0, not 8000"},
		{"idle_session_timeout the server's", with("idle_session_timeout", "60000"), "idle_session_timeout is 60000, not 8000"},
		{"a keepalive rewritten", with("tcp_keepalives_count", "9"), "tcp_keepalives_count is 9, not 4"},
		{"an old server", with("idle_session_timeout", ""), "idle_session_timeout is unknown, not 8000"},
	} {
		err := checkSettings(want, tt.got)
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%s: checkSettings = %v; want nil", tt.name, err)
		case tt.bad != "" && (err == nil || !strings.Contains(err.Error(), tt.bad) || !strings.Contains(err.Error(), "PgBouncer") || !strings.Contains(err.Error(), "connect to PostgreSQL directly")):
			t.Errorf("%s: checkSettings = %v; want an error saying %q, naming PgBouncer and what to do", tt.name, err, tt.bad)
		}
	}
}
