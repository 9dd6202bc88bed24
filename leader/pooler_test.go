package leader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/calpresence/calpresence/internal/pgtest"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// pooler is a connection pooler in transaction mode, as PgBouncer's
// pool_mode=transaction, small enough for a test: its clients share a few
// server sessions, each client holding one only from the first message of
// a transaction to the ReadyForQuery that ends it. It answers the clients'
// startup itself (no password), so their startup parameters never reach
// the server (PgBouncer's ignore_startup_parameters): the server sessions
// have the pooler's own. Clients must not prepare named statements
// (pgx: default_query_exec_mode=simple_protocol, as with PgBouncer).
type pooler struct {
	t    *testing.T
	ln   net.Listener
	idle chan *pgconn.HijackedConn // the server sessions not in use
	done chan struct{}             // closed at cleanup
	wg   sync.WaitGroup

	mu      sync.Mutex
	clients []net.Conn
	servers []*pgconn.HijackedConn
	closed  bool
}

// newPooler starts a pooler with n server sessions on dsn, opened with the
// runtime parameters params (nil: the server's defaults).
func newPooler(t *testing.T, dsn string, n int, params map[string]string) *pooler {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pooler{t: t, ln: ln, idle: make(chan *pgconn.HijackedConn, n), done: make(chan struct{})}
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	for range n {
		c, err := pgconn.ConnectConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		hc, err := c.Hijack()
		if err != nil {
			t.Fatal(err)
		}
		p.servers = append(p.servers, hc)
		p.idle <- hc
	}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		close(p.done)
		p.mu.Lock()
		p.closed = true
		for _, c := range p.clients {
			c.Close()
		}
		for _, s := range p.servers {
			s.Conn.Close()
		}
		p.mu.Unlock()
		ln.Close()
		p.wg.Wait()
	})
	return p
}

// dsn returns dsn pointed at the pooler, in pgx's simple protocol.
func (p *pooler) dsn(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.ln.Addr().String()
	q := u.Query()
	q.Set("default_query_exec_mode", "simple_protocol")
	u.RawQuery = q.Encode()
	return u.String()
}

// pids are the server backends' process ids.
func (p *pooler) pids() []uint32 {
	var pids []uint32
	for _, s := range p.servers {
		pids = append(pids, s.PID)
	}
	return pids
}

func (p *pooler) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.clients = append(p.clients, c)
		p.mu.Unlock()
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve runs one client connection.
func (p *pooler) serve(c net.Conn) {
	defer c.Close()
	client := pgproto3.NewBackend(c, c)
	for {
		msg, err := client.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := c.Write([]byte("N")); err != nil {
				return
			}
			continue
		case *pgproto3.StartupMessage:
		default: // a CancelRequest: not passed on
			return
		}
		break
	}
	// The startup is answered with the parameters of a server session.
	client.Send(&pgproto3.AuthenticationOk{})
	for k, v := range p.servers[0].ParameterStatuses {
		client.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	client.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	client.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if client.Flush() != nil {
		return
	}
	var server *pgconn.HijackedConn
	defer func() {
		if server != nil {
			p.idle <- server
		}
	}()
	for {
		msg, err := client.Receive()
		if err != nil {
			return
		}
		if _, ok := msg.(*pgproto3.Terminate); ok {
			return
		}
		if server == nil {
			select {
			case server = <-p.idle:
			case <-p.done:
				return
			}
		}
		server.Frontend.Send(msg)
		switch msg.(type) {
		case *pgproto3.Query, *pgproto3.Sync:
		default:
			continue // more of the same exchange follows
		}
		if server.Frontend.Flush() != nil {
			return
		}
		// Relay the answer up to ReadyForQuery; outside a transaction the
		// server session goes back to the pool.
		for {
			bm, err := server.Frontend.Receive()
			if err != nil {
				if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, net.ErrClosed) {
					p.t.Logf("pooler: server session: %v", err)
				}
				return
			}
			client.Send(bm)
			if rfq, ok := bm.(*pgproto3.ReadyForQuery); ok {
				if client.Flush() != nil {
					return
				}
				if rfq.TxStatus == 'I' {
					p.idle <- server
					server = nil
				}
				break
			}
		}
	}
}

// serverParams are the settings the electors of the test ask for, for a
// pooler's server sessions: as if the pooler passed them on.
func serverParams(t *testing.T, dsn string) map[string]string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return sessionConfig(cfg, "pooler", fast.ServerTimeout, true).RuntimeParams
}

// Behind a pooler in transaction mode two replicas' sessions take turns on
// one server backend. pg_try_advisory_lock answers true on a backend that
// holds the lock already (session locks are re-entrant), so both would
// lead; the second must refuse instead.
func TestPoolerTwoSessionsOnOneBackend(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	p := newPooler(t, dsn, 1, serverParams(t, dsn))
	a := startReplica(t, p.dsn(t, dsn), "a", fast, nil)
	waitLeading(t, 10*time.Second, a)
	b := startReplica(t, p.dsn(t, dsn), "b", fast, nil)
	// b tries every Retry on the backend a holds the lock on: tries
	// enough, over more than a lease, to take it and act after the grace
	// (a b that took it would stop being refused, and lead).
	waitRefused(t, b, 2*int(fast.lease()/fast.Retry)+2, func() error {
		if b.e.Leading() {
			return fmt.Errorf("a and b both lead through one server backend (pid %v)", p.pids())
		}
		return nil
	})
	if !a.e.Leading() {
		t.Errorf("a stopped leading (role %s)", a.e.Role())
	}
	if got := b.logs.Lines("cannot try the leader lock", "holds it already", "PgBouncer"); len(got) == 0 {
		t.Errorf("b logged no refusal naming PgBouncer; logs:\n%s", b.logs.String())
	}
	if n := b.calls.Load(); n != 0 {
		t.Errorf("b led %d times; want 0", n)
	}
	noOverlap(t, a, b)
}

// A pooler that drops the startup parameters is refused before any lock
// is tried: the settings a leader is fenced by are missing, and its server
// sessions are shared.
func TestPoolerThatDropsTheSettings(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	p := newPooler(t, dsn, 1, nil)
	a := startReplica(t, p.dsn(t, dsn), "a", fast, nil)
	want := fmt.Sprintf("idle_session_timeout is 0, not %d", fast.ServerTimeout.Milliseconds())
	if !testutil.WaitUntil(10*time.Second, func() bool {
		return len(a.logs.Lines("cannot try the leader lock", want, "PgBouncer", "connect to PostgreSQL directly")) > 0
	}) {
		t.Fatalf("no refusal saying %q and naming PgBouncer within 10s", want)
	}
	// Refused again and again, over more than a lease: a never leads.
	waitRefused(t, a, int(fast.lease()/fast.Retry)+2, nil)
	if n := a.calls.Load(); n != 0 || a.e.Leading() {
		t.Errorf("a led %d times (Leading %v) through a pooler that drops its settings; want never", n, a.e.Leading())
	}
}

// A pooler that moves the lock session to another server backend fences
// the leader at its next check: the lock stayed on the first backend.
func TestPoolerMovesTheSession(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DB(t)
	// Two backends taken in turn: the lock is tried on one and checked on
	// the other.
	p := newPooler(t, dsn, 2, serverParams(t, dsn))
	a := startReplica(t, p.dsn(t, dsn), "a", fast, nil)
	if !testutil.WaitUntil(10*time.Second, func() bool {
		return len(a.logs.Lines("lost the leader lock", "lock_lost", "not", "that took it", "pooler in transaction mode")) > 0
	}) {
		t.Fatalf("a not fenced for a moved session within 10s (backends %v)", p.pids())
	}
	if got := a.metric("calpresence_leader_fenced_total", "reason", "lock_lost"); got < 1 {
		t.Errorf("a: fenced_total{lock_lost} = %v; want ≥ 1", got)
	}
	if n := a.calls.Load(); n != 0 {
		t.Errorf("a led %d times; want 0 (fenced during the grace)", n)
	}
}
