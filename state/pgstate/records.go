package pgstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/calpresence/calpresence/state"
)

// The tables of migrations/0001_initial.sql. Their names are the buckets
// a *state.BadRecordsError names, as in the bbolt file.
const (
	tableSessions   = "sessions"
	tableIdentities = "identities"
	tableSignals    = "signals"
)

// Sessions returns every recorded session, by Key. A record that does not
// decode is skipped: the good ones come with a *state.BadRecordsError
// naming the others, as from the bbolt store. Any other error means no
// session could be read.
func (s *Store) Sessions() (map[string]state.Session, error) {
	out := make(map[string]state.Session)
	err := readAll(s, tableSessions, func(k string, sess state.Session) { out[k] = sess })
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// PutSession records sess under sess.Key(), replacing any earlier one, and
// returns once it is committed.
func (s *Store) PutSession(sess state.Session) error {
	return s.PutSessions([]state.Session{sess})
}

// PutSessions records many sessions in one transaction: all or none.
// Where two name one key, the last wins.
func (s *Store) PutSessions(sessions []state.Session) error {
	return putAll(s, tableSessions, sessions, func(sess state.Session) (string, error) {
		if sess.Key() == "" {
			return "", errors.New("state: put session: no user id")
		}
		return sess.Key(), nil
	})
}

// DeleteSession forgets the session stored under key (a Session's Key);
// forgetting none is not an error.
func (s *Store) DeleteSession(key string) error {
	return s.delete(tableSessions, key)
}

// Identities returns every cached identity, by normalised address, with a
// *state.BadRecordsError for those that do not decode (as Sessions).
func (s *Store) Identities() (map[string]state.Identity, error) {
	out := make(map[string]state.Identity)
	err := readAll(s, tableIdentities, func(k string, id state.Identity) {
		id.Address = k
		out[k] = id
	})
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// PutIdentities records ids in one transaction, each under its normalised
// address, replacing earlier ones; where two spell one address, the last
// wins.
func (s *Store) PutIdentities(ids []state.Identity) error {
	return putAll(s, tableIdentities, ids, func(id state.Identity) (string, error) {
		key := state.NormalizeAddress(id.Address)
		if key == "" {
			return "", errors.New("state: put identity: empty address")
		}
		return key, nil
	})
}

// DeleteIdentity forgets what is cached for address.
func (s *Store) DeleteIdentity(address string) error {
	return s.delete(tableIdentities, state.NormalizeAddress(address))
}

// DeleteIdentities forgets what is cached for each of addresses, in one
// statement; forgetting none is not an error.
func (s *Store) DeleteIdentities(addresses []string) error {
	keys := make([][]byte, 0, len(addresses))
	for _, a := range addresses {
		if k := state.NormalizeAddress(a); k != "" {
			keys = append(keys, []byte(k))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	// Joined on sha256(key), the unique index, then on the key itself.
	err := s.exec(ctx, `DELETE FROM identities AS t USING unnest($1::bytea[]) AS d(key)
		WHERE sha256(t.key) = sha256(d.key) AND t.key = d.key`, keys)
	if err != nil {
		return fmt.Errorf("state: delete %d identities: %w", len(keys), err)
	}
	return nil
}

// Signals returns every stored signal, by ID, expired ones included, with
// a *state.BadRecordsError for those that do not decode (as Sessions).
func (s *Store) Signals() (map[string]state.Signal, error) {
	out := make(map[string]state.Signal)
	err := readAll(s, tableSignals, func(k string, sig state.Signal) {
		sig.ID = k
		out[k] = sig
	})
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// queuedSignalsQuery reads the inbox alone, through the partial index
// signals_queued (migrations/*_signals_queued.sql).
const queuedSignalsQuery = "SELECT key, record FROM signals WHERE queued"

// QueuedSignals returns the signals waiting in the inbox (their ID begins
// with state.QueuedPrefix), by ID, and reads no other row, with a
// *state.BadRecordsError for those that do not decode (as Sessions).
func (s *Store) QueuedSignals() (map[string]state.Signal, error) {
	out := make(map[string]state.Signal)
	err := query(s, tableSignals, queuedSignalsQuery, func(k string, sig state.Signal) {
		sig.ID = k
		out[k] = sig
	})
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// Signal returns the signal stored under id, and whether there is one.
func (s *Store) Signal(id string) (state.Signal, bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var data []byte
	err := s.pool.QueryRow(ctx, "SELECT record FROM signals WHERE key = $1", id).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return state.Signal{}, false, nil
	}
	if err != nil {
		return state.Signal{}, false, fmt.Errorf("state: read %s: %w", tableSignals, err)
	}
	var sig state.Signal
	if err := json.Unmarshal(data, &sig); err != nil {
		return state.Signal{}, false, &state.BadRecordsError{Records: []state.BadRecord{{Bucket: tableSignals, Key: id, Err: err}}}
	}
	sig.ID = id
	return sig, true, nil
}

// PutSignal records sig under sig.ID, durably.
func (s *Store) PutSignal(sig state.Signal) error {
	return putAll(s, tableSignals, []state.Signal{sig}, func(sig state.Signal) (string, error) {
		if sig.ID == "" {
			return "", errors.New("state: put signal: empty id")
		}
		return sig.ID, nil
	})
}

// DeleteSignal forgets the signal stored under id; forgetting none is not
// an error.
func (s *Store) DeleteSignal(id string) error {
	return s.delete(tableSignals, id)
}

// readAll decodes every record of table and hands each to add with its
// key. A record that does not decode is skipped and named in the
// *state.BadRecordsError returned once the rest are read.
func readAll[T any](s *Store, table string, add func(key string, v T)) error {
	return query(s, table, "SELECT key, record FROM "+table, add)
}

// query is readAll of the rows sql (which selects key and record) reads
// from table.
func query[T any](s *Store, table, sql string, add func(key string, v T)) error {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.pool.Query(ctx, sql)
	if err != nil {
		return fmt.Errorf("state: read %s: %w", table, err)
	}
	defer rows.Close()
	var (
		bad       []state.BadRecord
		key, data []byte
	)
	for rows.Next() {
		if err := rows.Scan(&key, &data); err != nil {
			return fmt.Errorf("state: read %s: %w", table, err)
		}
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			bad = append(bad, state.BadRecord{Bucket: table, Key: string(key), Err: err})
			continue
		}
		add(string(key), v)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("state: read %s: %w", table, err)
	}
	if len(bad) > 0 {
		return &state.BadRecordsError{Records: bad}
	}
	return nil
}

// putAll encodes values and upserts each under its key, all in one
// statement (one transaction): all or none. Where a key repeats, the last
// value wins, as in the bbolt store's sequential puts (one INSERT may not
// update a row twice).
func putAll[T any](s *Store, table string, values []T, key func(T) (string, error)) error {
	keys := make([][]byte, 0, len(values))
	recs := make([][]byte, 0, len(values))
	at := make(map[string]int, len(values))
	for _, v := range values {
		k, err := key(v)
		if err != nil {
			return err
		}
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("state: encode %s %q: %w", table, k, err)
		}
		if i, ok := at[k]; ok {
			recs[i] = data
			continue
		}
		at[k] = len(keys)
		keys = append(keys, []byte(k))
		recs = append(recs, data)
	}
	if len(keys) == 0 {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	err := s.exec(ctx, `INSERT INTO `+table+` (key, record)
		SELECT * FROM unnest($1::bytea[], $2::bytea[])
		ON CONFLICT ((sha256(key))) DO UPDATE SET record = excluded.record`, keys, recs)
	if err != nil {
		if len(keys) == 1 {
			return fmt.Errorf("state: put %s %q: %w", table, keys[0], err)
		}
		return fmt.Errorf("state: put %d %s: %w", len(keys), table, err)
	}
	return nil
}

// delete removes the record of table under key; none is not an error.
func (s *Store) delete(table, key string) error {
	if key == "" {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.exec(ctx, "DELETE FROM "+table+" WHERE sha256(key) = sha256($1) AND key = $1", []byte(key)); err != nil {
		return fmt.Errorf("state: delete %s %q: %w", table, key, err)
	}
	return nil
}

// isBadRecords reports whether err is readAll's "some records skipped".
func isBadRecords(err error) bool {
	var bad *state.BadRecordsError
	return errors.As(err, &bad)
}

// Feed returns the stored copy of source's feed. A damaged record, a body
// that does not decompress, or one whose hash does not match is a
// *state.BadRecordsError naming the source.
func (s *Store) Feed(source string) (state.Feed, bool, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	var rec, gz, exp []byte
	err := s.pool.QueryRow(ctx, "SELECT record, body, expansion FROM feeds WHERE sha256(source) = sha256($1) AND source = $1",
		[]byte(source)).Scan(&rec, &gz, &exp)
	if errors.Is(err, pgx.ErrNoRows) {
		return state.Feed{}, false, nil
	}
	if err != nil {
		return state.Feed{}, false, fmt.Errorf("state: read feed %q: %w", source, err)
	}
	f, err := state.DecodeFeed(source, rec, gz)
	if err != nil {
		return state.Feed{}, false, err
	}
	// A damaged expansion is no damage to the copy: left out, the copy
	// is parsed instead.
	f.Expansion, _ = state.DecodeExpansion(exp)
	return f, true, nil
}

// FeedHeads returns every stored copy without its body and with its
// Expansion, as the bbolt store's FeedHeads does: one sweep of the table
// that reads no body.
func (s *Store) FeedHeads() ([]state.Feed, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT source, record, expansion FROM feeds")
	if err != nil {
		return nil, fmt.Errorf("state: read feed heads: %w", err)
	}
	defer rows.Close()
	var heads []state.Feed
	var source, rec, exp []byte
	for rows.Next() {
		if err := rows.Scan(&source, &rec, &exp); err != nil {
			return nil, fmt.Errorf("state: read feed heads: %w", err)
		}
		f, err := state.DecodeFeedHead(string(source), rec)
		if err != nil {
			continue // Feed reports it
		}
		if e, err := state.DecodeExpansion(exp); err == nil {
			e.Occurrences = bytes.Clone(e.Occurrences) // exp is reused by the next Scan
			f.Expansion = e
		}
		heads = append(heads, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: read feed heads: %w", err)
	}
	return heads, nil
}

// PutFeed stores f as source's last good copy, replacing the previous one,
// durably. Hash is computed from Body when zero.
func (s *Store) PutFeed(f state.Feed) error {
	return s.PutFeeds([]state.Feed{f})
}

// parallelEncode is the batch size from which PutFeeds compresses on every
// core: 10,000 bodies of 20 KB take a second and more on one.
const parallelEncode = 16

// PutFeeds stores several feeds in one statement, one transaction: all or
// none. Where a source repeats, the last copy wins. The bodies are
// compressed before the statement, on every core for a large batch, and
// sent as three arrays in one round trip.
func (s *Store) PutFeeds(feeds []state.Feed) error {
	recs := make([][]byte, len(feeds))
	gzs := make([][]byte, len(feeds))
	exps := make([][]byte, len(feeds))
	errs := make([]error, len(feeds))
	encode := func(i int) {
		recs[i], gzs[i], errs[i] = state.EncodeFeed(feeds[i])
		exps[i] = state.EncodeExpansion(feeds[i].Expansion)
	}
	if len(feeds) < parallelEncode {
		for i := range feeds {
			encode(i)
		}
	} else {
		var (
			wg   sync.WaitGroup
			next = make(chan int)
		)
		for range runtime.GOMAXPROCS(0) {
			wg.Go(func() {
				for i := range next {
					encode(i)
				}
			})
		}
		for i := range feeds {
			next <- i
		}
		close(next)
		wg.Wait()
	}
	for _, err := range errs {
		if err != nil {
			return err // the first, as from the bbolt store
		}
	}

	// Last wins: keep each source's last copy, in first-seen order.
	at := make(map[string]int, len(feeds))
	sources := make([][]byte, 0, len(feeds))
	var keepRecs, keepGzs, keepExps [][]byte
	for i, f := range feeds {
		if j, ok := at[f.Source]; ok {
			keepRecs[j], keepGzs[j], keepExps[j] = recs[i], gzs[i], exps[i]
			continue
		}
		at[f.Source] = len(sources)
		sources = append(sources, []byte(f.Source))
		keepRecs = append(keepRecs, recs[i])
		keepGzs = append(keepGzs, gzs[i])
		keepExps = append(keepExps, exps[i])
	}
	if len(sources) == 0 {
		return nil
	}
	ctx, cancel := s.ctx()
	defer cancel()
	err := s.exec(ctx, `INSERT INTO feeds (source, record, body, expansion)
		SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[])
		ON CONFLICT ((sha256(source))) DO UPDATE
		SET record = excluded.record, body = excluded.body, expansion = excluded.expansion`,
		sources, keepRecs, keepGzs, keepExps)
	if err != nil {
		return fmt.Errorf("state: put feeds: %w", err)
	}
	return nil
}

// DeleteFeedsExcept drops the stored copies of every source not in sources
// (those no longer configured); none kept drops them all.
func (s *Store) DeleteFeedsExcept(sources []string) error {
	keep := make([][]byte, 0, len(sources)) // never nil: NULL would keep everything
	for _, src := range sources {
		keep = append(keep, []byte(src))
	}
	ctx, cancel := s.ctx()
	defer cancel()
	if err := s.exec(ctx, "DELETE FROM feeds WHERE NOT (source = ANY($1::bytea[]))", keep); err != nil {
		return fmt.Errorf("state: delete feeds: %w", err)
	}
	return nil
}
