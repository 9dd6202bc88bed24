// Package pg keeps calpresence's durable record in PostgreSQL
// (state.driver: postgres), so that several replicas share it: the one
// that leads writes, and whichever leads next reconciles from the sessions
// and intents it finds (docs/deploy.md).
//
// A *Store is a state.Store with the same semantics as state/bolt's
// (state/storetest checks both against one contract): every Put is committed when it returns, a batch
// is one transaction, a record that does not decode is skipped and named in
// a *state.BadRecordsError beside the good ones.
//
// The tables are created and migrated by Open (migrate.go,
// migrations/*.sql), under an advisory lock, so replicas may start
// together.
//
// A replica that takes the lead calls Lead and writes through the view it
// returns: the database refuses those writes with state.ErrFenced once a
// later leader has called Lead in turn (epoch.go). The Store Open returns
// writes unchecked, as a standby's webhook inbox must.
package pg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of Options.
const (
	// DefaultMaxConns is the pool's size when neither Options nor the
	// DSN's pool_max_conns says: the leader's writes are short, and a
	// standby replica uses one connection at most.
	DefaultMaxConns = 4
	// DefaultTimeout bounds each method's work in the database.
	DefaultTimeout = 30 * time.Second
)

// Options configure a Store. The zero value is the default.
type Options struct {
	// MaxConns caps the pool's connections; 0 takes the DSN's
	// pool_max_conns, else DefaultMaxConns.
	MaxConns int32
	// Timeout bounds each method's work in the database (a Put waits no
	// longer for a database that does not answer); 0 is DefaultTimeout.
	Timeout time.Duration
}

// Store is calpresence's state in a PostgreSQL database. Its methods are
// safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	where   string // host:port/database, for errors; never the DSN
	term    *term  // a view's (Lead); nil for the Store Open returns
}

// Open connects to the database dsn names (a URL or key=value string, as
// pgx reads it; TLS through sslmode, sslrootcert and the like), creates or
// migrates its tables, and returns the Store. A database migrated by a
// newer release is refused with a *NewerSchemaError.
//
// While another replica migrates, Open waits for it (for the advisory
// lock) as long as ctx allows.
//
// Errors name the host, port and database, never the DSN: it may carry
// the password.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if migrationsErr != nil {
		return nil, fmt.Errorf("state/pg: the binary's migrations: %w", migrationsErr)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message quotes the DSN with the password masked, on a
		// best-effort basis only: say nothing of it (config validation
		// reports why, redacted).
		return nil, errors.New("state/pg: open: the DSN does not parse (calpresence validate says why)")
	}
	// pgxpool fills in its own default (the number of CPUs, at least 4)
	// and cannot tell it from a value the DSN gave: look for the key.
	switch {
	case opts.MaxConns > 0:
		cfg.MaxConns = opts.MaxConns
	case !strings.Contains(dsn, "pool_max_conns"):
		cfg.MaxConns = DefaultMaxConns
	}
	rp := cfg.ConnConfig.RuntimeParams
	// A Put is durable when it returns: commit waits for the WAL flush
	// even where the server or role default is synchronous_commit off. A
	// DSN that sets it (remote_apply, say) is the operator's choice.
	if _, ok := rp["synchronous_commit"]; !ok {
		rp["synchronous_commit"] = "on"
	}
	if _, ok := rp["application_name"]; !ok {
		rp["application_name"] = "calpresence"
	}
	s := &Store{
		timeout: opts.Timeout,
		where:   where(cfg),
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state/pg: open %s: %w", s.where, err)
	}
	if err := migrate(ctx, s.pool, migrations); err != nil {
		s.pool.Close()
		return nil, fmt.Errorf("state/pg: open %s: %w", s.where, err)
	}
	return s, nil
}

// where names the database cfg connects to, without credentials.
func where(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	host := c.Host
	if strings.HasPrefix(host, "/") {
		return "database " + strconv.Quote(c.Database) + " on socket " + host
	}
	return fmt.Sprintf("database %q on %s:%d", c.Database, host, c.Port)
}

// Where names the database the Store uses (host, port and database, no
// credentials), for logs.
func (s *Store) Where() string { return s.where }

// Close closes the pool's connections, waiting for those in use. A view
// (Lead) shares the pool of the Store it came from: closing it does
// nothing.
func (s *Store) Close() error {
	if s.term == nil {
		s.pool.Close()
	}
	return nil
}

// ctx returns the context one method works under: the caller's, cut
// short after the Store's timeout.
func (s *Store) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, s.timeout)
}

// Ping reports whether the database answers, within ctx and the Store's
// timeout (/readyz).
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("state/pg: ping %s: %w", s.where, err)
	}
	return nil
}
