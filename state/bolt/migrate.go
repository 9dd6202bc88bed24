package bolt

import (
	"encoding/json"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/calpresence/calpresence/internal/mailaddr"
	"github.com/calpresence/calpresence/state"
)

// migrate brings a file of schema from up to schemaVersion inside tx: all or
// nothing.
func migrate(tx *bbolt.Tx, from int) error {
	if from < 2 {
		if err := migrate1to2(tx); err != nil {
			return err
		}
	}
	return nil
}

// sessionV1 is a session as schema 1 stored it: keyed by the configured
// address, with the object id when the call had resolved it.
type sessionV1 struct {
	User   string `json:"user"`
	UserID string `json:"user_id"`
	state.Session
}

// migrate1to2 re-keys sessions by Entra object id and turns the user-id
// cache into identities.
//
// Schema 1 kept one session per configured string, so one person could
// hold two records under two spellings. They are one Graph session (one
// sessionId per person), so they become one record: a record whose call
// was in flight wins (it is uncertain, and the reconciler re-sets or
// clears it), else the one whose lease ends last (it is what Graph shows).
// A record whose person was never resolved keeps its address as its key
// until the worker resolves it.
func migrate1to2(tx *bbolt.Tx) error {
	// The user-id cache: ids carry over, to be looked up again soon
	// (CheckedAt zero); an empty id was a forgotten one.
	ids := make(map[string]string)
	if old := tx.Bucket([]byte("user_ids")); old != nil {
		idb := tx.Bucket(bucketIdentities)
		err := old.ForEach(func(k, v []byte) error {
			var rec struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(v, &rec); err != nil || rec.ID == "" {
				return nil // a damaged or forgotten entry is looked up again
			}
			addr := mailaddr.Normalize(string(k))
			ids[addr] = rec.ID
			data, err := json.Marshal(state.Identity{ID: rec.ID})
			if err != nil {
				return err
			}
			return idb.Put([]byte(addr), data)
		})
		if err != nil {
			return fmt.Errorf("user ids: %w", err)
		}
		if err := tx.DeleteBucket([]byte("user_ids")); err != nil {
			return fmt.Errorf("user ids: %w", err)
		}
	}

	b := tx.Bucket(bucketSessions)
	merged := make(map[string]state.Session)
	var oldKeys [][]byte
	err := b.ForEach(func(k, v []byte) error {
		oldKeys = append(oldKeys, append([]byte(nil), k...))
		var old sessionV1
		if err := json.Unmarshal(v, &old); err != nil {
			return fmt.Errorf("session %q: %w", k, err)
		}
		sess := old.Session
		sess.UserID = old.UserID
		if sess.UserID == "" {
			sess.UserID = ids[mailaddr.Normalize(old.User)]
		}
		if sess.UserID == "" {
			sess.Address = mailaddr.Normalize(old.User)
		}
		key := sess.Key()
		if prev, ok := merged[key]; ok {
			sess = state.MergeSessions(prev, sess)
		}
		merged[key] = sess
		return nil
	})
	if err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	for _, k := range oldKeys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	for key, sess := range merged {
		data, err := json.Marshal(sess)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(key), data); err != nil {
			return err
		}
	}
	return nil
}
