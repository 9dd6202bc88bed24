package state

import (
	"errors"
	"fmt"
	"strings"
)

// ErrFenced reports a write the store refused because the writer's term
// as leader is over: another replica took the lead since (state/pg's
// leader epochs). It is not worth retrying: the writer must stop acting.
// The bbolt file, which one process holds, never returns it.
var ErrFenced = errors.New("this replica's term as leader is over (fenced)")

// BadRecord is one stored record that could not be decoded.
type BadRecord struct {
	Bucket string // sessions, identities, feeds, feed_bodies, meta
	Key    string
	Err    error // why it does not decode
}

func (r BadRecord) Error() string {
	return fmt.Sprintf("corrupt record %s %q: %v", r.Bucket, r.Key, r.Err)
}

// BadRecordsError reports records a read skipped because they do not
// decode. It is not fatal: a method that returns it also returns every
// record that did decode, and the caller should log it (naming the keys)
// and carry on with what it got. `calpresence state check` lists every bad
// record in the file.
type BadRecordsError struct {
	Records []BadRecord
}

func (e *BadRecordsError) Error() string {
	if len(e.Records) == 1 {
		return "state: " + e.Records[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "state: %d corrupt records", len(e.Records))
	const shown = 5
	for i, r := range e.Records {
		if i == shown {
			fmt.Fprintf(&b, "; and %d more", len(e.Records)-shown)
			break
		}
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(r.Error())
	}
	return b.String()
}

// Keys returns the keys of the skipped records, in the order found.
func (e *BadRecordsError) Keys() []string {
	keys := make([]string, len(e.Records))
	for i, r := range e.Records {
		keys[i] = r.Key
	}
	return keys
}

// NewBadRecord is the *BadRecordsError of one record, in bucket (or
// table) under key, that does not decode: what a driver returns for a
// single read of a damaged record.
func NewBadRecord(bucket, key string, err error) *BadRecordsError {
	return &BadRecordsError{Records: []BadRecord{{Bucket: bucket, Key: key, Err: err}}}
}
