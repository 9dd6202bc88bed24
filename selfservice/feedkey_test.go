package selfservice

import (
	"bytes"
	"strings"
	"testing"

	"github.com/calpresence/calpresence/state"
)

func TestFeedKeySealsAndOpens(t *testing.T) {
	key := bytes.Repeat([]byte{7}, MinKeyLen)
	k, err := NewFeedKey(key)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "https://calendar.google.com/calendar/ical/alice%40gmail.com/private-0123456789abcdef0123/basic.ics"
	f := k.Seal(state.OwnFeed{ID: "f1", Person: "alice-oid"}, secret)
	if bytes.Contains(f.Sealed, []byte("private-0123456789abcdef")) || bytes.Contains(f.Sealed, []byte("google")) {
		t.Fatalf("Sealed holds the URL in clear: %q", f.Sealed)
	}
	if got, err := k.Open(f); err != nil || got != secret {
		t.Fatalf("Open = %q, %v; want the URL", got, err)
	}
	if again := k.Seal(state.OwnFeed{ID: "f1", Person: "alice-oid"}, secret); bytes.Equal(again.Sealed, f.Sealed) {
		t.Errorf("two seals of the same URL are equal: the nonce is not random")
	}
	// Moved to another person's record, to another id, tampered, or
	// opened under another cookie key: refused, never a wrong URL.
	moved := f
	moved.Person = "mallory-oid"
	renamed := f
	renamed.ID = "f2"
	tampered := f
	tampered.Sealed = bytes.Clone(f.Sealed)
	tampered.Sealed[len(tampered.Sealed)-1] ^= 1
	short := f
	short.Sealed = f.Sealed[:8]
	other, _ := NewFeedKey(bytes.Repeat([]byte{8}, MinKeyLen))
	for name, c := range map[string]struct {
		k *FeedKey
		f state.OwnFeed
	}{"moved": {k, moved}, "renamed": {k, renamed}, "tampered": {k, tampered}, "short": {k, short}, "other key": {other, f}} {
		got, err := c.k.Open(c.f)
		if err == nil || got != "" {
			t.Errorf("%s: Open = %q, %v; want an error", name, got, err)
			continue
		}
		if !strings.Contains(err.Error(), c.f.ID) || strings.Contains(err.Error(), "google") {
			t.Errorf("%s: error %q should name the feed id and not the URL", name, err)
		}
	}
	if _, err := NewFeedKey(key[:MinKeyLen-1]); err == nil {
		t.Errorf("NewFeedKey(a short key) = nil error")
	}
}
