package selfservice

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/calpresence/calpresence/state"
)

// FeedKey seals the URLs of people's own feeds for the state store:
// AES-256-GCM under a key derived from the cookie key with HKDF-SHA256
// (its own label: no key serves two jobs), a random 96-bit nonce per seal,
// and the feed's id and person as additional data, so that a sealed URL
// moved to another record (another person's) does not open. Every replica
// holds the same cookie_key_file, so any of them opens what another
// sealed.
type FeedKey struct{ aead cipher.AEAD }

// NewFeedKey derives the feed key from the cookie key (at least
// MinKeyLen bytes, see ReadKey).
func NewFeedKey(cookieKey []byte) (*FeedKey, error) {
	if len(cookieKey) < MinKeyLen {
		return nil, fmt.Errorf("selfservice: the cookie key has %d bytes; want at least %d", len(cookieKey), MinKeyLen)
	}
	k, err := hkdf.Key(sha256.New, cookieKey, nil, "calpresence selfservice own feeds aes-gcm", 32)
	if err != nil {
		return nil, fmt.Errorf("selfservice: derive the feed key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &FeedKey{aead: aead}, nil
}

// feedAD is the additional data a feed's URL is sealed with.
func feedAD(f state.OwnFeed) []byte {
	return []byte("calpresence own feed\x00" + f.ID + "\x00" + f.Person)
}

// Seal returns f with Sealed set to rawURL sealed for f's ID and Person.
func (k *FeedKey) Seal(f state.OwnFeed, rawURL string) state.OwnFeed {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(rawURL)+k.aead.Overhead())
	_, _ = rand.Read(nonce)
	f.Sealed = k.aead.Seal(nonce, nonce, []byte(rawURL), feedAD(f))
	return f
}

// errSealed: a sealed URL that does not open.
var errSealed = errors.New("the sealed URL does not open with this cookie key (was selfservice.cookie_key_file replaced, or the record moved?)")

// Open returns the URL f.Sealed holds.
func (k *FeedKey) Open(f state.OwnFeed) (string, error) {
	n := k.aead.NonceSize()
	if len(f.Sealed) < n+k.aead.Overhead() {
		return "", fmt.Errorf("own feed %s: %w", f.ID, errSealed)
	}
	plain, err := k.aead.Open(nil, f.Sealed[:n], f.Sealed[n:], feedAD(f))
	if err != nil {
		return "", fmt.Errorf("own feed %s: %w", f.ID, errSealed)
	}
	return string(plain), nil
}
