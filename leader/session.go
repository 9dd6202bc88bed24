package leader

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// defaultConnectTimeout bounds a connection attempt when the DSN sets no
// connect_timeout.
const defaultConnectTimeout = 5 * time.Second

// sessionConfig derives the configuration of one elector session from the
// DSN's. Whatever silences the session (host gone, network cut, a frozen
// process or proxy), the server ends it, and so frees its lock, about
// serverTimeout after the last query it received:
//
//   - idle_session_timeout (PostgreSQL 14+) ends a session idle that long.
//     It is the one that always works: TCP keepalives are answered by any
//     kernel still holding the socket, a NAT box or a frozen proxy included.
//     Only the lock session gets it; a leader checks every Check and a
//     standby tries every Retry, both shorter.
//   - tcp_keepalives_idle/interval/count add up to about serverTimeout, for
//     a peer that vanished while the session was idle, and tcp_user_timeout
//     for one that vanished with data unacknowledged (keepalives are not
//     sent then).
//
// The client side dials with a connect timeout and the same keepalives; it
// does not rely on them for fencing (the lease does), only to drop a dead
// socket rather than keep it.
func sessionConfig(base *pgx.ConnConfig, name string, serverTimeout time.Duration, lock bool) *pgx.ConnConfig {
	c := base.Copy()
	secs := int((serverTimeout + time.Second - 1) / time.Second)
	idle := max(1, secs/2)
	count := max(1, secs-idle)
	ms := strconv.FormatInt(serverTimeout.Milliseconds(), 10)
	c.RuntimeParams["application_name"] = appName(name)
	c.RuntimeParams["tcp_keepalives_idle"] = strconv.Itoa(idle)
	c.RuntimeParams["tcp_keepalives_interval"] = "1"
	c.RuntimeParams["tcp_keepalives_count"] = strconv.Itoa(count)
	c.RuntimeParams["tcp_user_timeout"] = ms
	if lock {
		c.RuntimeParams["idle_session_timeout"] = ms
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = defaultConnectTimeout
	}
	d := &net.Dialer{
		Timeout: c.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     time.Duration(idle) * time.Second,
			Interval: time.Second,
			Count:    count,
		},
	}
	c.DialFunc = d.DialContext
	return c
}

// appName is the application_name of a session of the replica called
// name: appPrefix+name, cut to the 63 bytes PostgreSQL keeps.
func appName(name string) string {
	s := appPrefix + name
	for len(s) > 63 {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s
}

// describe names the database of cfg without its password.
func describe(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// connect opens a session with cfg and makes sure it reaches a primary: an
// advisory lock taken on a hot standby excludes nobody using the primary.
// For the lock session it also reads back the settings sessionConfig asked
// for (checkSettings): they fence a silent leader, and a pooler that drops
// them shares server sessions between its clients.
func (e *Elector) connect(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", e.where, err)
	}
	qctx, cancel := context.WithTimeout(ctx, e.checkTimeout)
	defer cancel()
	var (
		standby       bool
		names, values []string
	)
	err = conn.QueryRow(qctx, `SELECT pg_is_in_recovery(), coalesce(array_agg(name), '{}'), coalesce(array_agg(setting), '{}')
		FROM pg_settings WHERE name = ANY($1)`, checkedParams).Scan(&standby, &names, &values)
	if err != nil {
		e.closeConn(conn)
		return nil, fmt.Errorf("connect to %s: %w", e.where, err)
	}
	if standby {
		e.closeConn(conn)
		return nil, fmt.Errorf("connect to %s: the server is a read-only standby; point the DSN at the primary", e.where)
	}
	if cfg == e.cfg {
		got := make(map[string]string, len(names))
		for i, n := range names {
			got[n] = values[i]
		}
		if err := checkSettings(cfg.RuntimeParams, got); err != nil {
			e.closeConn(conn)
			return nil, fmt.Errorf("connect to %s: %w", e.where, err)
		}
	}
	return conn, nil
}

// checkedParams are the settings of the lock session that checkSettings
// reads back.
var checkedParams = []string{"idle_session_timeout", "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "tcp_user_timeout"}

// checkSettings compares the settings the lock session asked for (want,
// its startup parameters, in the server's units) with those its server
// session has (got, from pg_settings.setting).
//
// A pooler in transaction mode (PgBouncer's pool_mode=transaction) answers
// the startup itself and refuses or, with ignore_startup_parameters, drops
// the parameters it does not know: the server session never gets them. It
// also hands one server session to several clients in turn, and a session
// advisory lock belongs to the server session, so two replicas would both
// hold it. Missing settings are how such a pooler shows itself before any
// lock is taken. idle_session_timeout must be exactly what was asked; a TCP
// setting may also read 0, which is what the server shows where it cannot
// apply it (a Unix-domain socket for the keepalives; tcp_user_timeout off
// Linux, tcp_keepalives_count on Windows).
func checkSettings(want, got map[string]string) error {
	var bad []string
	for _, name := range checkedParams {
		w, ok := want[name]
		if !ok {
			continue
		}
		g := got[name]
		if g == w || (name != "idle_session_timeout" && g == "0") {
			continue
		}
		if g == "" {
			g = "unknown"
		}
		bad = append(bad, fmt.Sprintf("%s is %s, not %s", name, g, w))
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("the server session did not take the settings this replica connects with (%s): "+
		"a pooler in transaction mode (PgBouncer's pool_mode=transaction) drops them and shares one server session, "+
		"and so the leader lock, between clients; connect to PostgreSQL directly or through a pooler in session mode",
		strings.Join(bad, ", "))
}

// closeConn closes conn (nil is fine) without waiting long for a server
// that may be gone.
func (e *Elector) closeConn(conn *pgx.Conn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.checkTimeout)
	defer cancel()
	_ = conn.Close(ctx)
}

// tryLock asks for the lock once, without waiting for it, and returns the
// server backend (pid) that answered. Its deadline does not follow Run's
// context: a query cut short leaves the lock's state unknown, and the
// caller then closes the session.
//
// Session advisory locks are re-entrant: pg_try_advisory_lock answers true
// on a backend that holds the lock already. This session never holds it
// when it asks (a lock it had was released, or the session closed), so a
// backend that does is shared with another client, the leader: a pooler in
// transaction mode hands one server session to several clients in turn.
// The lock is then refused, not taken a second time.
func (e *Elector) tryLock(conn *pgx.Conn) (got bool, pid int32, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), e.checkTimeout)
	defer cancel()
	hi, lo := e.keyHalves()
	var shared bool
	// CASE evaluates its condition first: the lock is not tried on a
	// backend that holds it.
	err = conn.QueryRow(ctx, `SELECT pg_backend_pid(), held, CASE WHEN held THEN false ELSE pg_try_advisory_lock($3) END
		FROM (SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_backend_pid() AND `+lockWhere+`) AS held) s`,
		hi, lo, e.key).Scan(&pid, &shared, &got)
	if err != nil {
		return false, 0, fmt.Errorf("try lock %d: %w", e.key, err)
	}
	if shared {
		return false, pid, fmt.Errorf("try lock %d: server backend %d holds it already, for another client: "+
			"a pooler in transaction mode (PgBouncer's pool_mode=transaction) shares server sessions between clients; "+
			"connect to PostgreSQL directly or through a pooler in session mode", e.key, pid)
	}
	return got, pid, nil
}

var errLockLost = errors.New("the session no longer holds the lock")

// lockWhere selects the granted advisory lock on key in this database, the
// way PostgreSQL lays out a bigint key in pg_locks: high half in classid,
// low half in objid, objsubid 1.
const lockWhere = `l.locktype = 'advisory'
	AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1 AND l.granted`

func (e *Elector) keyHalves() (hi, lo int64) {
	return int64(uint32(uint64(e.key) >> 32)), int64(uint32(e.key))
}

// checkLock proves, before due, that conn is alive, still on the server
// backend pid that took the lock, and that this backend holds it. A
// session whose backend changed is behind a pooler that moves clients
// between server sessions: the lock stayed with the old one, and whoever
// is handed that one holds it too.
func (e *Elector) checkLock(conn *pgx.Conn, pid int32, due time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), due)
	defer cancel()
	hi, lo := e.keyHalves()
	var (
		now  int32
		held bool
	)
	err := conn.QueryRow(ctx, `SELECT pg_backend_pid(), EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = $3 AND `+lockWhere+`)`,
		hi, lo, pid).Scan(&now, &held)
	if err != nil {
		return fmt.Errorf("check lock %d: %w", e.key, err)
	}
	if now != pid {
		return fmt.Errorf("check lock %d: %w: the session is on server backend %d, not %d that took it: "+
			"a pooler in transaction mode (PgBouncer's pool_mode=transaction) moves clients between server sessions; "+
			"connect to PostgreSQL directly or through a pooler in session mode", e.key, errLockLost, now, pid)
	}
	if !held {
		return fmt.Errorf("check lock %d: %w", e.key, errLockLost)
	}
	return nil
}

// release gives the lock up. It returns conn, or nil when it had to close
// it (which frees the lock too, once the server sees it).
func (e *Elector) release(conn *pgx.Conn) *pgx.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), e.checkTimeout)
	defer cancel()
	var was bool
	err := conn.QueryRow(ctx, "SELECT pg_advisory_unlock($1)", e.key).Scan(&was)
	if err == nil && was {
		return conn
	}
	if err == nil {
		err = errLockLost
	}
	e.log.Warn("cannot release the leader lock; closing the session instead", "error", err)
	e.closeConn(conn)
	return nil
}

// holder names the session holding the lock, as seen from conn.
func (e *Elector) holder(ctx context.Context, conn *pgx.Conn) (string, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, e.checkTimeout)
	defer cancel()
	hi, lo := e.keyHalves()
	var name *string
	var start *time.Time
	err := conn.QueryRow(ctx, `SELECT a.application_name, a.backend_start
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE `+lockWhere, hi, lo).Scan(&name, &start)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("find the leader: %w", err)
	}
	var id string
	if name != nil {
		// Not ours when the prefix is missing: say so by keeping the name whole.
		id = strings.TrimPrefix(*name, appPrefix)
	}
	var since time.Time
	if start != nil {
		since = *start
	}
	return id, since, nil
}

// Leader names the replica leading now and since when, as any replica sees
// it: "" when nobody holds the lock. This replica answers for itself
// without a query (since is when it started to act); for another, since is
// when its database session began, which may be earlier than its lead
// (PostgreSQL does not record when a lock was granted), and is zero when
// the other runs as a role whose sessions this one may not inspect. An ID
// comes back cut as application_name keeps it (63 bytes with the prefix);
// a lock held by something other than an Elector comes back as its whole
// application_name. Leader queries on a session of its own, opened on
// first use and kept until Close.
func (e *Elector) Leader(ctx context.Context) (id string, since time.Time, err error) {
	if e.Leading() {
		return e.id, time.Unix(0, e.since.Load()), nil
	}
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	for {
		fresh := false
		if e.status == nil {
			if e.status, err = e.connect(ctx, e.statusCfg); err != nil {
				return "", time.Time{}, fmt.Errorf("leader: %w", err)
			}
			fresh = true
		}
		id, since, err = e.holder(ctx, e.status)
		if err == nil {
			return id, since, nil
		}
		e.closeConn(e.status)
		e.status = nil
		if fresh || ctx.Err() != nil {
			return "", time.Time{}, fmt.Errorf("leader: %w", err)
		}
		// The kept session had gone stale (a server restart): once more.
	}
}

// Close closes the session Leader queries on. Run closes its own.
func (e *Elector) Close() error {
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	e.closeConn(e.status)
	e.status = nil
	return nil
}
