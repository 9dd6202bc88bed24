package state

import (
	"time"
)

// OwnFeed is an ICS feed a person added on their self-service page
// (selfservice.feeds): polled like a source whose users: is that person
// alone. Its URL is a capability (a Google "secret address", an Outlook
// publishing link), so the record holds it sealed (AES-GCM under a key
// derived from selfservice.cookie_key_file, selfservice.FeedKey); the
// store never sees it in clear. Keyed by ID; shared by every replica
// through the store.
type OwnFeed struct {
	// ID is random, unique across people; the key.
	ID string `json:"-"`
	// Person is the Entra object id of the person whose feed it is.
	Person string `json:"person"`
	// Address is the person's user principal name when they added it:
	// the source's users: entry, resolved like any address.
	Address string `json:"address"`
	// Added is when the person added it.
	Added time.Time `json:"added"`
	// Sealed is the feed's URL, sealed for this ID and Person.
	Sealed []byte `json:"sealed"`
}
