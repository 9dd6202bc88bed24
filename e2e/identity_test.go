package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/graphtest"
)

// TestIdentityAliasInProxyAddresses: a Zoom feed names Frank by his UPN, a
// Google feed invites his alias (one of his proxyAddresses in Entra). The
// Google meeting starts inside the Zoom meeting and is then removed. The
// real Graph client resolves both addresses to one object id before the
// boundary, and Frank gets one set and one clear, at the Zoom meeting's
// start and end, whatever the Google feed does.
func TestIdentityAliasInProxyAddresses(t *testing.T) {
	t.Parallel()
	const frankID = "00000000-0000-4000-8000-00000000f4a7"
	g := graphtest.NewServer(t, graphtest.WithUsers(graphtest.User{ID: frankID, UserPrincipalName: "frank@contoso.com",
		Mail: "frank@contoso.com", ProxyAddresses: []string{"SMTP:frank@contoso.com", "smtp:frank.jones@contoso.com"}}))
	begin := soon(3 * time.Second)
	end := begin.Add(6 * time.Second)
	google := strings.Replace(ics(event{"g-1", begin.Add(time.Second), begin.Add(3 * time.Second)}),
		"END:VEVENT", "ATTENDEE;PARTSTAT=ACCEPTED:mailto:Frank.Jones@contoso.com\r\nEND:VEVENT", 1)
	e := start(t, g, ics(event{"zoom-1", begin, end}), nil, options{
		users: []string{"frank@contoso.com"},
		more:  []extraSource{{name: "google", body: google}},
		edit: func(c *config.Config) {
			c.Sources[1].Match, c.Sources[1].Domains = config.MatchAttendees, []string{"contoso.com"}
		},
	})
	e.eventually("inside the Google meeting", time.Until(begin)+3*time.Second, func() bool {
		return time.Now().After(begin.Add(1500 * time.Millisecond))
	})
	e.feeds.Set("google", []byte(ics()))
	e.waitFor("clearPresence 200", time.Until(end)+5*time.Second, func(c graphtest.Call) bool {
		return c.Op == graphtest.OpClearPresence && c.Status == 200
	})
	time.Sleep(2 * time.Second) // a few more polls: nothing else happens

	if got, want := presenceOps(g, frankID), []string{"setPresence 200", "clearPresence 200"}; !slices.Equal(got, want) {
		t.Errorf("presence calls for Frank = %v; want %v (one person, one session)", got, want)
	}
	for _, c := range g.CallsFor(frankID) {
		switch c.Op {
		case graphtest.OpSetPresence:
			if c.Time.Before(begin) || c.ExpirationDuration != "PT6S" && c.ExpirationDuration != "PT5M" {
				t.Errorf("set at %v for %s; want at the Zoom start (%v) for Graph's minimum PT5M", c.Time, c.ExpirationDuration, begin)
			}
		case graphtest.OpClearPresence:
			if c.Time.Before(end) {
				t.Errorf("clear at %v; want at the Zoom end (%v), not when the Google meeting went", c.Time, end)
			}
		}
	}
	// Both addresses were resolved before the boundary: the alias by
	// UPN (404), then by proxy address.
	for _, c := range g.Calls() {
		if (c.Op == graphtest.OpGetUser || c.Op == graphtest.OpListUsers) && !c.Time.Before(begin) {
			t.Errorf("%s %s at %v: a lookup on the boundary's path", c.Op, c.User, c.Time)
		}
	}
	if n := countCalls(g, graphtest.OpListUsers, "frank.jones@contoso.com", 200); n != 1 {
		t.Errorf("proxyAddresses lookups of the alias = %d; want 1", n)
	}
	if n := len(e.logs.Lines("addresses name one person", `"user":"frank@contoso.com"`)); n != 1 {
		t.Errorf("merge reported %d times; want once", n)
	}
	if n := len(e.logs.Lines(`"msg":"presence set"`, `"user":"frank@contoso.com"`, `"user_id":"`+frankID+`"`)); n != 1 {
		t.Errorf("the set was not logged with Frank's UPN and id:\n%s", e.logs.String())
	}
	waitNoSessionsRecorded(t, e)
}
