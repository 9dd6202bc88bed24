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

// The names a Feed's two stored parts go by in a BadRecord (the bbolt
// buckets; PostgreSQL's columns of one row).
const (
	feedsBucket      = "feeds"
	feedBodiesBucket = "feed_bodies"
)

// feedRecord is a Feed's metadata as stored; the body is stored apart
// (feedBodiesBucket) so that it is raw gzip, not base64 in JSON.
type feedRecord struct {
	URLHash      string    `json:"url_hash"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	Hash         string    `json:"hash"` // hex
	Size         int       `json:"size"` // uncompressed body length
	FetchedAt    time.Time `json:"fetched_at"`
}

// EncodeFeed returns f as a store keeps it: its metadata record (JSON) and
// its body, gzip-compressed, so that the body is stored as raw gzip, not
// base64 in JSON. A zero Hash is computed from Body. The drivers (state/bolt,
// state/pg) share this encoding (and DecodeFeed).
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
		return nil, nil, fmt.Errorf("state: encode %s %q: %w", feedsBucket, f.Source, err)
	}
	gz, err = compress(f.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("state: compress feed %q: %w", f.Source, err)
	}
	return rec, gz, nil
}

// DecodeFeed turns source's stored record and compressed body (from
// EncodeFeed) back into a Feed. A record that does not decode, a body that
// does not decompress (or is missing: gz nil), or one whose hash does not
// match is a
// *BadRecordsError naming the source (in "feeds" or "feed_bodies").
func DecodeFeed(source string, rec, gz []byte) (Feed, error) {
	var r feedRecord
	f, err := decodeFeedRecord(source, rec, &r)
	if err != nil {
		return Feed{}, err
	}
	if gz == nil {
		return Feed{}, NewBadRecord(feedBodiesBucket, source, errors.New("body missing"))
	}
	f.Body, err = gunzip(gz, r.Size)
	if err != nil {
		return Feed{}, NewBadRecord(feedBodiesBucket, source, err)
	}
	if sha256.Sum256(f.Body) != f.Hash {
		return Feed{}, NewBadRecord(feedBodiesBucket, source, errors.New("body does not match its hash"))
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
	if err := json.Unmarshal(rec, r); err != nil {
		return Feed{}, NewBadRecord(feedsBucket, source, err)
	}
	f := Feed{
		Source:     source,
		URLHash:    r.URLHash,
		Validators: Validators{ETag: r.ETag, LastModified: r.LastModified},
		FetchedAt:  r.FetchedAt,
	}
	if n, err := hex.Decode(f.Hash[:], []byte(r.Hash)); err != nil || n != len(f.Hash) {
		return Feed{}, NewBadRecord(feedsBucket, source, fmt.Errorf("bad hash %q", r.Hash))
	}
	return f, nil
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
