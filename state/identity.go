package state

import (
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
	// UnknownSince is when Entra first said so, of the answers in a row
	// that did: the lookups of an unknown address back off with it (zero
	// when not Unknown, or from an earlier release).
	UnknownSince time.Time `json:"unknown_since,omitzero"`
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
	err := readAll(s, bucketIdentities, func(k string, id Identity) {
		id.Address = k
		out[k] = id
	})
	if err != nil && !isBadRecords(err) {
		return nil, err
	}
	return out, err
}

// PutIdentities records ids in one transaction, each under its normalised
// address, replacing earlier ones.
func (s *Store) PutIdentities(ids []Identity) error {
	return putAll(s, bucketIdentities, "identities", ids, func(id Identity) (string, error) {
		key := NormalizeAddress(id.Address)
		if key == "" {
			return "", errors.New("state: put identity: empty address")
		}
		return key, nil
	}, true)
}

// DeleteIdentity forgets what is cached for address.
func (s *Store) DeleteIdentity(address string) error {
	return s.delete(bucketIdentities, NormalizeAddress(address))
}

// DeleteIdentities forgets what is cached for each of addresses, in one
// transaction: the worker forgets the addresses no feed names any more in
// batches, not with an fsync each. Forgetting none is not an error.
func (s *Store) DeleteIdentities(addresses []string) error {
	var keys [][]byte
	for _, a := range addresses {
		if k := NormalizeAddress(a); k != "" {
			keys = append(keys, []byte(k))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketIdentities)
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: delete %d identities: %w", len(keys), err)
	}
	return nil
}
