package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Identity is what Entra said of one calendar address: the person it
// names, or that it names nobody. The worker resolves every address a feed
// yields ahead of any boundary and keeps the answers here, so that a
// restart knows everyone's object id before Graph answers a single lookup.
type Identity struct {
	Address string `json:"-"` // lower-cased; the key
	// ID is the person's Entra object id; empty when Unknown.
	ID  string `json:"id,omitempty"`
	UPN string `json:"upn,omitempty"`
	// Unknown records that Entra has no user with this address.
	Unknown bool `json:"unknown,omitempty"`
	// CheckedAt is when Entra last answered for this address (zero for an
	// id carried over from schema 1: it is looked up again soon).
	CheckedAt time.Time `json:"checked_at,omitzero"`
}

// NormalizeAddress is the form identities are keyed by: trimmed and
// lower-cased (Entra compares UPNs and addresses without case).
func NormalizeAddress(address string) string {
	return strings.ToLower(strings.TrimSpace(address))
}

// Identities returns every cached identity, by address. A record that does
// not decode is skipped, as in Sessions: the good ones come with a
// *BadRecordsError naming the others (they are looked up again).
func (s *Store) Identities() (map[string]Identity, error) {
	out := make(map[string]Identity)
	var bad []BadRecord
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketIdentities).ForEach(func(k, v []byte) error {
			var id Identity
			if err := json.Unmarshal(v, &id); err != nil {
				bad = append(bad, BadRecord{Bucket: string(bucketIdentities), Key: string(k), Err: err})
				return nil
			}
			id.Address = string(k)
			out[id.Address] = id
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return out, &BadRecordsError{Records: bad}
	}
	return out, nil
}

// PutIdentities records ids in one transaction, each under its normalised
// address, replacing earlier ones.
func (s *Store) PutIdentities(ids []Identity) error {
	type rec struct {
		key  string
		data []byte
	}
	recs := make([]rec, 0, len(ids))
	for _, id := range ids {
		key := NormalizeAddress(id.Address)
		if key == "" {
			return errors.New("state: put identity: empty address")
		}
		data, err := json.Marshal(id)
		if err != nil {
			return fmt.Errorf("state: encode %s %q: %w", bucketIdentities, key, err)
		}
		recs = append(recs, rec{key, data})
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdentities)
		for _, r := range recs {
			if err := b.Put([]byte(r.key), r.data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: put %d identities: %w", len(ids), err)
	}
	return nil
}

// DeleteIdentity forgets what is cached for address.
func (s *Store) DeleteIdentity(address string) error {
	return s.delete(bucketIdentities, NormalizeAddress(address))
}
