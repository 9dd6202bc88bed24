package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultKey is the advisory lock key used when Options.Key is 0: the
// FNV-1a 64-bit hash of "calpresence", written out because every version
// of every replica must agree on it. Advisory locks are per database, so
// two deployments sharing one database need different keys.
const DefaultKey int64 = 6551464313214876238

// Defaults of Options. See the package documentation for how they add up.
const (
	DefaultRetry         = 2 * time.Second
	DefaultCheck         = 1 * time.Second
	DefaultCheckTimeout  = 2 * time.Second
	DefaultServerTimeout = 8 * time.Second
)

// appPrefix starts the application_name of every elector session, which is
// how other replicas learn who leads (pg_stat_activity).
const appPrefix = "calpresence/"

// ErrNotLeader is what IsLeader returns while this replica does not lead.
var ErrNotLeader = errors.New("leader: this replica is not the leader")

// Options configure an Elector. The zero value is usable: every field has a
// default. All replicas must use the same Key, Check and CheckTimeout (the
// grace a new leader waits is derived from the last two).
type Options struct {
	// ID names this replica to the others (default hostname-pid). It is
	// sent as application_name "calpresence/<ID>", which PostgreSQL cuts to
	// 63 bytes.
	ID string
	// Key is the advisory lock key (default DefaultKey).
	Key int64
	// Logger receives state changes and failures (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, registers the package's metrics.
	Registerer prometheus.Registerer
	// Retry is how often a standby tries to take the lock (default 2 s).
	Retry time.Duration
	// Check is how often the leader proves it still holds the lock
	// (default 1 s).
	Check time.Duration
	// CheckTimeout is how long a proof may take (default 2 s). A proof is
	// valid for Check+CheckTimeout from when it was asked: the lease.
	CheckTimeout time.Duration
	// ServerTimeout is how long the server keeps the lock of a session that
	// went silent (idle_session_timeout, and TCP keepalives and
	// tcp_user_timeout of about the same length). It must exceed the lease
	// and Retry. Default 8 s; needs PostgreSQL 14 or later.
	ServerTimeout time.Duration
}

// Elector takes part in the election of one leader among replicas sharing a
// PostgreSQL database. Create it with New, run it with Run; ask Leading,
// Role, IsLeader and Leader from any goroutine.
type Elector struct {
	id                                        string
	key                                       int64
	cfg                                       *pgx.ConnConfig // the lock session
	statusCfg                                 *pgx.ConnConfig // the session Leader queries on
	where                                     string          // user@host:port/db, for logs and errors
	log                                       *slog.Logger
	m                                         *metrics
	retry, check, checkTimeout, serverTimeout time.Duration

	// epoch is the monotonic origin of lease; leading and lease together
	// say whether this replica may act (Leading).
	epoch   time.Time
	mu      sync.Mutex // orders changes of leading against fencing
	leading atomic.Bool
	lease   atomic.Int64 // time.Since(epoch) in ns before which the last proof holds
	since   atomic.Int64 // unix ns when this replica became leader

	running atomic.Bool

	statusMu sync.Mutex
	status   *pgx.Conn
}

// New returns an Elector for the database at dsn (a URL or keyword/value
// connection string). It does not connect: Run does. Errors never show
// the DSN's password.
func New(dsn string, o Options) (*Elector, error) {
	if o.ID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "unknown"
		}
		o.ID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if o.Key == 0 {
		o.Key = DefaultKey
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Retry == 0 {
		o.Retry = DefaultRetry
	}
	if o.Check == 0 {
		o.Check = DefaultCheck
	}
	if o.CheckTimeout == 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
	if o.ServerTimeout == 0 {
		o.ServerTimeout = DefaultServerTimeout
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgconn's ParseConfigError shows the DSN with the password
		// replaced by xxxxx.
		return nil, fmt.Errorf("leader: parse DSN: %w", err)
	}
	e := &Elector{
		id:            o.ID,
		key:           o.Key,
		where:         describe(cfg),
		log:           o.Logger.With("leader_id", o.ID),
		m:             newMetrics(o.Registerer),
		retry:         o.Retry,
		check:         o.Check,
		checkTimeout:  o.CheckTimeout,
		serverTimeout: o.ServerTimeout,
		epoch:         time.Now(),
	}
	e.cfg = sessionConfig(cfg, o.ID, o.ServerTimeout, true)
	e.statusCfg = sessionConfig(cfg, o.ID+" (status)", o.ServerTimeout, false)
	return e, nil
}

func (o Options) validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"retry", o.Retry}, {"check", o.Check}, {"check_timeout", o.CheckTimeout}, {"server_timeout", o.ServerTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive (got %v)", d.name, d.v))
		}
	}
	if o.ServerTimeout < time.Second {
		errs = append(errs, fmt.Errorf("server_timeout: must be at least 1s (got %v)", o.ServerTimeout))
	}
	if lease := o.Check + o.CheckTimeout; lease >= o.ServerTimeout {
		errs = append(errs, fmt.Errorf("server_timeout: must exceed check+check_timeout (%v), so a silent leader stops before the server frees its lock (got %v)", lease, o.ServerTimeout))
	}
	if o.Retry >= o.ServerTimeout {
		errs = append(errs, fmt.Errorf("retry: must be shorter than server_timeout (%v) or the server ends the standby's idle session (got %v)", o.ServerTimeout, o.Retry))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("leader: options: %w", err)
	}
	return nil
}

// ID returns the name this replica goes by.
func (e *Elector) ID() string { return e.id }

// Leading reports whether this replica leads now and may act. It is cheap
// (two atomic loads and a monotonic clock read): ask it before every action
// that only the leader may take. It turns false the moment leadership is
// lost, and at the latest when the last proof of holding the lock expires,
// even if the goroutine that checks is starved.
func (e *Elector) Leading() bool {
	return e.leading.Load() && time.Since(e.epoch) < time.Duration(e.lease.Load())
}

// Role returns "leader" while Leading, else "standby" (for /readyz).
func (e *Elector) Role() string {
	if e.Leading() {
		return "leader"
	}
	return "standby"
}

// IsLeader returns nil while this replica leads and ErrNotLeader otherwise.
// It makes an Elector a gocron.Elector: with gocron.WithDistributedElector,
// a scheduler runs its jobs only on the leader. (gocron asks when a job is
// due; a job that runs long should still check Leading before acting.)
func (e *Elector) IsLeader(context.Context) error {
	if e.Leading() {
		return nil
	}
	return ErrNotLeader
}

func (e *Elector) leaseLen() time.Duration { return e.check + e.checkTimeout }

// prove records that the lock was held when a query asked at t ran.
func (e *Elector) prove(t time.Time) {
	e.lease.Store(int64(t.Sub(e.epoch) + e.leaseLen()))
}

// startLeading marks this replica leader unless term has already ended.
func (e *Elector) startLeading(term context.Context) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if term.Err() != nil {
		return false
	}
	e.since.Store(time.Now().UnixNano())
	e.leading.Store(true)
	e.m.leader.Set(1)
	e.m.takeovers.Inc()
	return true
}

// stopLeading clears leading; with a fence it also ends the term (under the
// same lock, so startLeading cannot slip in between).
func (e *Elector) stopLeading(fence context.CancelCauseFunc, cause error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.leading.Store(false)
	e.m.leader.Set(0)
	if fence != nil {
		fence(cause)
	}
}

// Run takes part in the election until ctx ends, then releases the lock
// (so a rolling update hands over at once) and returns nil. Each time this
// replica becomes leader it calls lead with a context that is cancelled the
// moment leadership is lost or ctx ends; lead must then return promptly,
// though after ctx ended it may let calls in flight finish: the lock is
// checked until lead returns, and Lost(leadCtx) ends if it is lost.
// When lead returns on its own (nil or an error), Run releases the lock,
// waits 2×Retry so a standby may take over, and stands by again; the same
// after this replica was fenced. A nil lead just holds the lead until it
// is lost, for callers that only use Leading or IsLeader (gocron). Run may
// not be called twice at once.
func (e *Elector) Run(ctx context.Context, lead func(context.Context) error) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("leader: Run is already running")
	}
	defer e.running.Store(false)
	if lead == nil {
		lead = func(ctx context.Context) error { <-ctx.Done(); return nil }
	}
	e.log.Info("standing by", "database", e.where, "key", e.key)
	var conn *pgx.Conn
	defer func() { e.closeConn(conn) }()
	for {
		var (
			asked time.Time
			pid   int32
		)
		conn, asked, pid = e.acquire(ctx, conn)
		if ctx.Err() != nil {
			return nil
		}
		var stepDown bool
		conn, stepDown = e.term(ctx, conn, asked, pid, lead)
		if ctx.Err() != nil {
			return nil
		}
		if stepDown {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(2 * e.retry):
			}
		}
	}
}

// acquire tries the lock every Retry until it has it (returning the session
// holding it, when the winning query was asked and the server backend that
// took it) or ctx ends.
func (e *Elector) acquire(ctx context.Context, conn *pgx.Conn) (*pgx.Conn, time.Time, int32) {
	var lastErr string // logged when it changes, not every Retry
	reported := false  // the current leader has been named in the log
	for {
		var err error
		if conn == nil {
			conn, err = e.connect(ctx, e.cfg)
		}
		if conn != nil {
			asked := time.Now()
			var (
				got bool
				pid int32
			)
			got, pid, err = e.tryLock(conn)
			if err == nil && lastErr != "" {
				lastErr = ""
				e.log.Info("database reachable again", "database", e.where)
			}
			if err == nil && got {
				return conn, asked, pid
			}
			if err != nil {
				e.closeConn(conn)
				conn = nil
			} else if !reported {
				reported = true
				id, _, lerr := e.holder(ctx, conn)
				e.log.Info("another replica leads", "leader", id, "error", lerr)
			} else {
				e.log.Debug("leader lock held by another replica; trying again", "retry", e.retry)
			}
		}
		if ctx.Err() != nil {
			return conn, time.Time{}, 0
		}
		if err != nil && err.Error() != lastErr {
			lastErr = err.Error()
			e.log.Warn("cannot try the leader lock", "database", e.where, "error", err)
		} else if err != nil {
			e.log.Debug("cannot try the leader lock; trying again", "error", err, "retry", e.retry)
		}
		select {
		case <-ctx.Done():
			return conn, time.Time{}, 0
		case <-time.After(e.retry):
		}
	}
}

var (
	errStepDown = errors.New("leader: lead returned")
	errFenced   = errors.New("leader: fenced")
)

// term holds the lock from acquisition to its loss or release: a grace of
// one lease, then lead. It returns the session if it is still usable (lock
// released) and whether Run should pause before trying again (lead
// stepped down, or this replica was fenced).
//
// The lock is checked until lead has returned, not merely until its
// context ends: after Run's context ends (SIGTERM) lead may still finish
// calls in flight, and those must be cut (Lost) if the lock is lost
// meanwhile, for another replica may then take over.
func (e *Elector) term(ctx context.Context, conn *pgx.Conn, asked time.Time, pid int32, lead func(context.Context) error) (*pgx.Conn, bool) {
	e.prove(asked)
	termCtx, end := context.WithCancelCause(ctx)
	defer end(errStepDown)
	stopAfter := context.AfterFunc(termCtx, func() { e.stopLeading(nil, nil) })
	defer stopAfter()
	lost, lose := context.WithCancelCause(context.Background())
	defer lose(errStepDown)
	fence := func(cause error) {
		e.stopLeading(end, cause)
		lose(cause)
	}

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watched := make(chan *pgx.Conn, 1)
	go func() { watched <- e.watch(watchCtx, fence, conn, asked, pid) }()

	// A previous leader may still act until its last lease ends, at most
	// one lease after the lock came free, which was before we got it.
	grace := time.NewTimer(e.leaseLen())
	var leadErr error
	led := false
	select {
	case <-termCtx.Done():
		grace.Stop()
	case <-grace.C:
		if e.startLeading(termCtx) {
			led = true
			e.log.Info("leading", "database", e.where, "key", e.key)
			leadErr = lead(context.WithValue(termCtx, lostKey{}, lost))
		}
	}
	e.stopLeading(end, errStepDown)
	stopWatch()
	conn = <-watched
	fenced := errors.Is(context.Cause(lost), errFenced)
	if conn != nil {
		conn = e.release(conn)
	}
	switch {
	case ctx.Err() != nil:
		return conn, false
	case fenced:
		// Pause too: a standby whose session is sound is the better
		// leader, and this one may well be fenced again.
		return conn, true
	case leadErr != nil:
		e.log.Error("lead failed; stepping down", "error", leadErr)
	case led:
		e.log.Info("lead returned; stepping down")
	}
	return conn, led
}

// lostKey keys the context Lost returns in the context lead is given.
type lostKey struct{}

// Lost returns, for the context Run gives lead, a context that ends when
// this replica loses that lead (it is fenced: the lock is gone, or not
// proven within the lease), and in any case once lead has returned. It
// does not end when the lead is handed back because Run's context ended:
// lead's own context ends then, and lead may still let calls in flight
// finish, while Run keeps checking the lock until lead returns. Cut those
// calls short when Lost ends: another replica may be about to act. For a
// context that does not come from Run, Lost returns one that never ends.
func Lost(ctx context.Context) context.Context {
	if lost, ok := ctx.Value(lostKey{}).(context.Context); ok {
		return lost
	}
	return context.Background()
}

// watch proves every Check that conn, on server backend pid, still holds
// the lock, each proof due within the lease of the previous one, until
// stop ends. When a proof fails it fences (stops leading, ends the term
// and Lost's context at once), then closes conn and returns nil. When stop
// ends first it returns conn, still holding the lock.
func (e *Elector) watch(stop context.Context, fenceFn func(cause error), conn *pgx.Conn, asked time.Time, pid int32) *pgx.Conn {
	fence := func(reason string, err error) {
		fenceFn(fmt.Errorf("%w: %s: %v", errFenced, reason, err))
		e.m.fenced.WithLabelValues(reason).Inc()
		e.log.Error("lost the leader lock; stopped acting", "reason", reason, "error", err, "database", e.where)
	}
	tick := time.NewTimer(time.Until(asked.Add(e.check)))
	defer tick.Stop()
	for {
		select {
		case <-stop.Done():
			return conn
		case <-tick.C:
		}
		now := time.Now()
		due := asked.Add(e.leaseLen())
		if !now.Before(due) {
			fence("lease_expired", fmt.Errorf("no check between %s and %s", asked.Format(time.RFC3339Nano), now.Format(time.RFC3339Nano)))
			e.closeConn(conn)
			return nil
		}
		done := make(chan error, 1)
		go func() { done <- e.checkLock(conn, pid, due) }()
		expire := time.NewTimer(time.Until(due))
		var err error
		select {
		case err = <-done:
			expire.Stop()
			switch {
			case errors.Is(err, errLockLost):
				fence("lock_lost", err)
			case errors.Is(err, context.DeadlineExceeded):
				// The query's deadline is the lease's: pgx may report it
				// before the timer below fires.
				fence("check_timeout", err)
			case err != nil:
				fence("check_failed", err)
			}
		case <-expire.C:
			// Fence first, then wait: the query's own deadline is the
			// same, so pgx gives conn back about now.
			err = fmt.Errorf("no answer within %v", due.Sub(now).Round(time.Millisecond))
			fence("check_timeout", err)
			<-done
		}
		if err != nil {
			e.closeConn(conn)
			return nil
		}
		e.prove(now)
		asked = now
		tick.Reset(time.Until(asked.Add(e.check)))
	}
}
