package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Expansion is a feed copy's occurrences as the engine last expanded them,
// kept beside the copy: a restart reconciles from them before any copy is
// parsed again, so that what is due at start goes out within seconds
// however many feeds there are. The store keeps it as it is given; what
// it holds is the engine's business.
type Expansion struct {
	// Key names what the expansion depended on besides the copy and the
	// time (zone, horizon, caps, ...): one made under other settings is
	// not used.
	Key string
	// At is when it was made: it covers [At-1h, At+horizon].
	At time.Time
	// Occurrences are in their stored form (ical.AppendOccurrences).
	Occurrences []byte
}

// expansionVersion is the first byte of an encoded Expansion.
const expansionVersion = 1

// EncodeExpansion returns e as a store keeps it; nil for the zero
// Expansion. The bbolt Store and state/pgstate share this encoding (and
// DecodeExpansion).
func EncodeExpansion(e Expansion) []byte {
	if e.Key == "" && e.At.IsZero() && e.Occurrences == nil {
		return nil
	}
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(e.Key)+len(e.Occurrences))
	b = append(b, expansionVersion)
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.AppendVarint(b, e.At.UnixNano())
	return append(b, e.Occurrences...)
}

// DecodeExpansion reads what EncodeExpansion wrote; nil is the zero
// Expansion. Bytes it cannot read are an error (the caller parses the copy
// instead), never a panic. The Occurrences share b's memory.
func DecodeExpansion(b []byte) (Expansion, error) {
	if len(b) == 0 {
		return Expansion{}, nil
	}
	if b[0] != expansionVersion {
		return Expansion{}, fmt.Errorf("expansion version %d, want %d", b[0], expansionVersion)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return Expansion{}, errors.New("expansion key truncated")
	}
	b = b[k:]
	e := Expansion{Key: string(b[:n])}
	b = b[n:]
	at, k := binary.Varint(b)
	if k <= 0 {
		return Expansion{}, errors.New("expansion time truncated")
	}
	e.At = time.Unix(0, at).UTC()
	e.Occurrences = b[k:]
	return e, nil
}

// FeedHeads returns every stored copy without its body (Body nil, Hash and
// the rest as stored) and with its Expansion: what a restart reconciles
// from. A copy whose record is damaged is left out (Feed reports it); a
// damaged expansion is left empty.
func (s *Store) FeedHeads() ([]Feed, error) {
	var heads []Feed
	err := s.view(func(tx *bolt.Tx) error {
		exps := tx.Bucket(bucketFeedExpansions) // nil in a file opened read-only before init
		return tx.Bucket(bucketFeeds).ForEach(func(k, v []byte) error {
			f, err := DecodeFeedHead(string(k), v)
			if err != nil {
				return nil
			}
			if exps != nil {
				if e, err := DecodeExpansion(exps.Get(k)); err == nil {
					e.Occurrences = bytes.Clone(e.Occurrences) // only valid inside the transaction
					f.Expansion = e
				}
			}
			heads = append(heads, f)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state: read feed heads: %w", err)
	}
	return heads, nil
}
