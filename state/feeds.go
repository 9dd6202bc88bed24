package state

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Validators are a feed's HTTP cache validators. (state keeps its own copy
// of sources.Validators so that it imports nothing of the project.)
type Validators struct {
	ETag         string
	LastModified string
}

// Feed is the last good copy of one source's feed: what the worker parses
// when the source cannot be read, and what a conditional GET is checked
// against.
type Feed struct {
	Source string
	// URLHash is URLHash of the URL the copy came from. The caller compares
	// it with the configured URL's: a changed URL makes the copy stale.
	URLHash    string
	Validators Validators
	Hash       [32]byte // SHA-256 of Body
	Body       []byte   // the feed as fetched; stored gzip-compressed
	FetchedAt  time.Time
	// Expansion is the copy's occurrences as the engine last expanded
	// them (zero: none kept), stored beside the copy so that a restart
	// reconciles from them before the copy is parsed again.
	Expansion Expansion
}

// URLHash returns the hex SHA-256 of a configured feed URL, for Feed.URLHash.
// The URL itself is not stored: it may carry a token.
func URLHash(rawURL string) string {
	sum := sha256.Sum256([]byte(rawURL))
	return hex.EncodeToString(sum[:])
}

// feedRecord is a Feed's metadata as stored; the body is a separate key in
// bucketFeedBodies so that it is stored as raw gzip, not base64 in JSON.
type feedRecord struct {
	URLHash      string    `json:"url_hash"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	Hash         string    `json:"hash"` // hex
	Size         int       `json:"size"` // uncompressed body length
	FetchedAt    time.Time `json:"fetched_at"`
}

// Feed returns the stored copy of source's feed, with its Expansion. A
// damaged record, a body that does not decompress, or one whose hash does
// not match is a *BadRecordsError naming the source.
func (s *Store) Feed(source string) (Feed, bool, error) {
	var (
		rec, gz, exp []byte
		found        bool
	)
	err := s.view(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketFeeds).Get([]byte(source))
		if data == nil {
			return nil
		}
		found = true
		rec = bytes.Clone(data) // only valid inside the transaction
		body := tx.Bucket(bucketFeedBodies).Get([]byte(source))
		if body == nil {
			// A damaged record is reported before a missing body, as
			// before DecodeFeed took the decoding over.
			var probe feedRecord
			if err := decode(bucketFeeds, []byte(source), data, &probe); err != nil {
				return err
			}
			return badRecord(bucketFeedBodies, []byte(source), errors.New("body missing"))
		}
		gz = bytes.Clone(body)
		if b := tx.Bucket(bucketFeedExpansions); b != nil {
			exp = bytes.Clone(b.Get([]byte(source)))
		}
		return nil
	})
	if err != nil || !found {
		return Feed{}, false, err
	}
	f, err := DecodeFeed(source, rec, gz)
	if err != nil {
		return Feed{}, false, err
	}
	// A damaged expansion is no damage to the copy: it is left out, and
	// the copy parsed instead.
	f.Expansion, _ = DecodeExpansion(exp)
	return f, true, nil
}

// EncodeFeed returns f as a store keeps it: its metadata record (JSON) and
// its body, gzip-compressed, so that the body is stored as raw gzip, not
// base64 in JSON. A zero Hash is computed from Body. The bbolt Store and
// state/pgstate share this encoding (and DecodeFeed).
func EncodeFeed(f Feed) (rec, gz []byte, err error) {
	if f.Source == "" {
		return nil, nil, errors.New("state: put feed: empty source")
	}
	if f.Hash == ([32]byte{}) {
		f.Hash = sha256.Sum256(f.Body)
	}
	rec, err = json.Marshal(feedRecord{
		URLHash:      f.URLHash,
		ETag:         f.Validators.ETag,
		LastModified: f.Validators.LastModified,
		Hash:         hex.EncodeToString(f.Hash[:]),
		Size:         len(f.Body),
		FetchedAt:    f.FetchedAt,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("state: encode %s %q: %w", bucketFeeds, f.Source, err)
	}
	gz, err = compress(f.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("state: compress feed %q: %w", f.Source, err)
	}
	return rec, gz, nil
}

// DecodeFeed turns source's stored record and compressed body (from
// EncodeFeed) back into a Feed. A record that does not decode, a body that
// does not decompress, or one whose hash does not match is a
// *BadRecordsError naming the source (in "feeds" or "feed_bodies").
func DecodeFeed(source string, rec, gz []byte) (Feed, error) {
	var r feedRecord
	f, err := decodeFeedRecord(source, rec, &r)
	if err != nil {
		return Feed{}, err
	}
	f.Body, err = gunzip(gz, r.Size)
	if err != nil {
		return Feed{}, badRecord(bucketFeedBodies, []byte(source), err)
	}
	if sha256.Sum256(f.Body) != f.Hash {
		return Feed{}, badRecord(bucketFeedBodies, []byte(source), errors.New("body does not match its hash"))
	}
	return f, nil
}

// DecodeFeedHead is DecodeFeed without the body: the Feed has no Body
// and no Expansion.
func DecodeFeedHead(source string, rec []byte) (Feed, error) {
	var r feedRecord
	return decodeFeedRecord(source, rec, &r)
}

func decodeFeedRecord(source string, rec []byte, r *feedRecord) (Feed, error) {
	if err := decode(bucketFeeds, []byte(source), rec, r); err != nil {
		return Feed{}, err
	}
	f := Feed{
		Source:     source,
		URLHash:    r.URLHash,
		Validators: Validators{ETag: r.ETag, LastModified: r.LastModified},
		FetchedAt:  r.FetchedAt,
	}
	if n, err := hex.Decode(f.Hash[:], []byte(r.Hash)); err != nil || n != len(f.Hash) {
		return Feed{}, badRecord(bucketFeeds, []byte(source), fmt.Errorf("bad hash %q", r.Hash))
	}
	return f, nil
}

// PutFeed stores f as source's last good copy, replacing the previous one,
// durably. Hash is computed from Body when zero.
func (s *Store) PutFeed(f Feed) error {
	return s.PutFeeds([]Feed{f})
}

// PutFeeds stores several feeds in one transaction: one fsync instead of one
// per feed (about 4 ms each on the test machines, so 40 s for 10,000 feeds
// written one by one). Either all are stored or none.
func (s *Store) PutFeeds(feeds []Feed) error {
	type encoded struct{ key, rec, gz, exp []byte }
	enc := make([]encoded, 0, len(feeds))
	// Encode and compress outside the transaction: bbolt has one writer at a
	// time.
	for _, f := range feeds {
		rec, gz, err := EncodeFeed(f)
		if err != nil {
			return err
		}
		enc = append(enc, encoded{[]byte(f.Source), rec, gz, EncodeExpansion(f.Expansion)})
	}
	// Batch: concurrent writers (the pollers) share one fsync'd
	// transaction; each call stays all-or-nothing.
	err := s.db.Batch(func(tx *bolt.Tx) error {
		bodies, metas, exps := tx.Bucket(bucketFeedBodies), tx.Bucket(bucketFeeds), tx.Bucket(bucketFeedExpansions)
		for _, e := range enc {
			if err := bodies.Put(e.key, e.gz); err != nil {
				return fmt.Errorf("%q: %w", e.key, err)
			}
			// A copy without an expansion drops the previous copy's.
			put := func() error { return exps.Put(e.key, e.exp) }
			if e.exp == nil {
				put = func() error { return exps.Delete(e.key) }
			}
			if err := put(); err != nil {
				return fmt.Errorf("%q: %w", e.key, err)
			}
			if err := metas.Put(e.key, e.rec); err != nil {
				return fmt.Errorf("%q: %w", e.key, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: put feeds: %w", err)
	}
	return nil
}

// DeleteFeedsExcept drops the stored copies of every source not in sources
// (those no longer configured).
func (s *Store) DeleteFeedsExcept(sources []string) error {
	keep := make(map[string]bool, len(sources))
	for _, src := range sources {
		keep[src] = true
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketFeeds, bucketFeedBodies, bucketFeedExpansions} {
			b := tx.Bucket(name)
			// Collect first: deleting under a cursor can skip keys.
			var drop [][]byte
			if err := b.ForEach(func(k, _ []byte) error {
				if !keep[string(k)] {
					drop = append(drop, bytes.Clone(k))
				}
				return nil
			}); err != nil {
				return err
			}
			for _, k := range drop {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: delete feeds: %w", err)
	}
	return nil
}

// gzip.Writer holds ~1 MB of compressor state: reuse them.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// compress gzips b. BestSpeed: ICS compresses well at any level, and the
// first pass over thousands of feeds stores all of them.
func compress(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(b)/4 + 64)
	w := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(w)
	w.Reset(&buf)
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gunzip(gz []byte, size int) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	// size is only a hint; a damaged record must not make us allocate wildly.
	size = min(max(size, 0), 64<<20)
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	if _, err := io.Copy(buf, r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
