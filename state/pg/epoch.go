package pg

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/calpresence/calpresence/state"
)

// Leader epochs (migrations/0002_leader_epoch.sql). The advisory lock
// decides who leads, but a write already sent, or sent by a process frozen
// and resumed after it lost the lock, reaches the database whoever leads by
// then. So each lead takes a new epoch, and its writes carry it: the
// database checks, in the write's own transaction, that no later lead has
// begun.

// fenceCode is the SQLSTATE calpresence_fence raises for a write of an
// epoch that is over.
const fenceCode = "CPF01"

// term is what the views of one lead share.
type term struct {
	epoch  int64
	once   sync.Once
	fenced chan struct{} // closed at the first write the database refuses
}

// Lead begins a term as leader: it advances the database's leader epoch
// and returns a view of s whose writes carry the new one. Every write of
// the view is checked in its own transaction and refused, with an error
// wrapping state.ErrFenced, once a later term has begun (another call of
// Lead, by any replica); reads are as s's. Call it as the lead is taken
// (holding the leader's lock), before reading the state the term acts on.
//
// The view shares s's pool: it is usable until s is closed, and its own
// Close does nothing.
func (s *Store) Lead(ctx context.Context) (*Store, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var epoch int64
	// The row lock waits for writes of the previous term that passed their
	// check to commit: whatever this term reads next includes them.
	err := s.pool.QueryRow(ctx, "UPDATE leader_epoch SET epoch = epoch + 1, taken_at = now() RETURNING epoch").Scan(&epoch)
	if err != nil {
		return nil, fmt.Errorf("state: take a leader epoch: %w", err)
	}
	v := *s
	v.term = &term{epoch: epoch, fenced: make(chan struct{})}
	return &v, nil
}

// Epoch is the leader epoch the Store's writes carry: 0 for the Store Open
// returns, whose writes are not checked.
func (s *Store) Epoch() int64 {
	if s.term == nil {
		return 0
	}
	return s.term.epoch
}

// Fenced returns a channel closed once the database has refused a write of
// the view's term (a later term has begun): the term is over. nil (never
// closed) for the Store Open returns.
func (s *Store) Fenced() <-chan struct{} {
	if s.term == nil {
		return nil
	}
	return s.term.fenced
}

// exec runs one write statement. A view runs it behind calpresence_fence,
// in one round trip and one transaction: the statements of a batch run in
// one implicit transaction, and the first one's error skips the rest.
func (s *Store) exec(ctx context.Context, sql string, args ...any) error {
	if s.term == nil {
		_, err := s.pool.Exec(ctx, sql, args...)
		return err
	}
	b := &pgx.Batch{}
	b.Queue("SELECT calpresence_fence($1)", s.term.epoch)
	b.Queue(sql, args...)
	br := s.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == fenceCode {
		s.term.once.Do(func() { close(s.term.fenced) })
		return fmt.Errorf("%s: %w", pe.Message, state.ErrFenced)
	}
	return err
}
