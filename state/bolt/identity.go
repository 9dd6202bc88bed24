package bolt

import (
	"context"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/state"
)

// Identities returns every cached identity, by address. A record that does
// not decode is skipped, as in Sessions: the good ones come with a
// *BadRecordsError naming the others (they are looked up again).
func (s *Store) Identities(ctx context.Context) (map[string]state.Identity, error) {
	out := make(map[string]state.Identity)
	err := readAll(s, bucketIdentities, func(k string, id state.Identity) {
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
func (s *Store) PutIdentities(ctx context.Context, ids []state.Identity) error {
	return putAll(s, bucketIdentities, "identities", ids, func(id state.Identity) (string, error) {
		key := mailaddr.Normalize(id.Address)
		if key == "" {
			return "", errors.New("state: put identity: empty address")
		}
		return key, nil
	}, true)
}

// DeleteIdentity forgets what is cached for address.
func (s *Store) DeleteIdentity(ctx context.Context, address string) error {
	return s.delete(bucketIdentities, mailaddr.Normalize(address))
}

// DeleteIdentities forgets what is cached for each of addresses, in one
// transaction: the worker forgets the addresses no feed names any more in
// batches, not with an fsync each. Forgetting none is not an error.
func (s *Store) DeleteIdentities(ctx context.Context, addresses []string) error {
	var keys [][]byte
	for _, a := range addresses {
		if k := mailaddr.Normalize(a); k != "" {
			keys = append(keys, []byte(k))
		}
	}
	if len(keys) == 0 {
		return nil
	}
	err := s.db.Batch(func(tx *bbolt.Tx) error {
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
