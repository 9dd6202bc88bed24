package engine

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/testutil"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/state/mem"
	"github.com/calpresence/calpresence/sync/identity"
)

// churn is the size of TestEngineBoundedGrowth's calendar: every day,
// churnMeetings meetings of churnAttendees new external addresses each,
// one in churnUnknownEvery of them unknown to Entra.
const (
	churnDays          = 30
	churnMeetings      = 20
	churnAttendees     = 10
	churnUnknownEvery  = 5
	churnPerDay        = churnMeetings * churnAttendees
	churnPollInterval  = 30 * time.Minute
	churnFeedChangesAt = 5 * time.Minute // after midnight
)

// churnGuest is attendee j of meeting i of day k.
func churnGuest(k, i, j int) string {
	return fmt.Sprintf("guest-%02d-%02d-%d@partner.example", k, i, j)
}

// churnFeed is the partners' calendar as it reads on day k: that day's
// meetings, each with its own new attendees; on day 0 the CEO's calendar
// alias (a users: entry) attends too.
func churnFeed(begin time.Time, k int) string {
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n")
	for day := k; day == k; day++ {
		for i := range churnMeetings {
			start := begin.Add(time.Duration(day)*24*time.Hour + 8*time.Hour + time.Duration(i)*25*time.Minute).UTC()
			fmt.Fprintf(&b, "BEGIN:VEVENT\r\nUID:m-%02d-%02d\r\nDTSTAMP:20000101T000000Z\r\nDTSTART:%s\r\nDTEND:%s\r\nSUMMARY:meeting %d of day %d\r\n",
				day, i, start.Format("20060102T150405Z"), start.Add(30*time.Minute).Format("20060102T150405Z"), i, day)
			for j := range churnAttendees {
				fmt.Fprintf(&b, "ATTENDEE;PARTSTAT=ACCEPTED:mailto:%s\r\n", churnGuest(day, i, j))
			}
			if day == 0 && i == 0 {
				b.WriteString("ATTENDEE;PARTSTAT=ACCEPTED:mailto:ceo.office@partner.example\r\n")
			}
			b.WriteString("END:VEVENT\r\n")
		}
	}
	b.WriteString("END:VCALENDAR\r\n")
	return b.String()
}

// directorySizes are the sizes of the directory's maps and of the
// identities in the store.
type directorySizes struct {
	seen, known, byID, failed, reported, recheck, stored int
}

func (h *harness) directorySizes() directorySizes {
	z := h.eng.dir.Sizes()
	s := directorySizes{seen: z.Seen, known: z.Known, byID: z.ByID, failed: z.Failed,
		reported: z.Reported, recheck: z.Recheck}
	ids, err := h.store.Identities(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	s.stored = len(ids)
	return s
}

func (s directorySizes) String() string {
	return fmt.Sprintf("seen %d, known %d, by id %d, failed %d, reported %d, recheck %d; identities stored %d",
		s.seen, s.known, s.byID, s.failed, s.reported, s.recheck, s.stored)
}

// TestEngineBoundedGrowth runs the engine for 30 simulated days on a
// partners' calendar whose attendees are new every day (200 external
// Addresses a day, one in five unknown to Entra). What the worker keeps of
// addresses, in memory and in the state, stays bounded by the addresses of
// the last identity.ForgetAfter (plus the feed's look ahead) and the configured
// people: nothing grows with the days. An unknown address costs a handful
// of lookups over its life, not one an hour. BENCHMARKS.md ("Bounded
// growth") records the figures it logs.
func TestEngineBoundedGrowth(t *testing.T) {
	if testing.Short() {
		t.Skip("30 simulated days take 7 s, 40 s with -race")
	}
	synctest.Test(t, func(t *testing.T) {
		begin := time.Now()
		graph := &testutil.Presence{Begin: begin, ResolveErr: func(a string) error {
			if strings.HasPrefix(a, "guest-") && strings.HasSuffix(a, fmt.Sprintf("-%d@partner.example", churnUnknownEvery-1)) {
				return &presence.Error{Op: "resolveUser", User: a, Status: 404, Kind: presence.NotFound}
			}
			return nil
		}}
		cfg := testConfig()
		cfg.Schedule.IdentityRefresh = 24 * time.Hour
		cfg.Users = []config.User{{Email: "ceo.office@partner.example", User: "ceo@contoso.com"}}
		cfg.Sources = []config.Source{
			{Name: "team", URL: "https://example.test/team.ics", Users: []string{alice}, PollInterval: churnPollInterval},
			{Name: "partners", URL: "https://example.test/partners.ics", Match: config.MatchAttendees,
				Domains: []string{"partner.example"}, PollInterval: churnPollInterval},
		}
		h := &harness{t: t, feeds: &fakeFeeds{bodies: map[string]string{
			"team": ics(begin), "partners": churnFeed(begin, 0),
		}, errs: map[string]error{}}, graph: graph, store: mem.New(), begin: begin, metrics: NewMetrics(nil)}
		h.start(cfg)

		// An address of day k is named until the feed changes on day k+1
		// and forgotten identity.ForgetAfter later, at the next hourly sweep: just
		// after a change, the addresses of 9 days (days D-8 to D) at most,
		// and the configured people.
		const configured = 2 // alice (fixed), ceo@contoso.com (users:)
		days := int(identity.ForgetAfter/(24*time.Hour)) + 2
		bound := days*churnPerDay + configured
		var figures []string
	days:
		for day := 1; day <= churnDays; day++ {
			h.until(time.Duration(day)*24*time.Hour + churnFeedChangesAt)
			h.feeds.set("partners", churnFeed(begin, day))
			h.until(time.Duration(day)*24*time.Hour + churnFeedChangesAt + churnPollInterval) // read
			s := h.directorySizes()
			if sessions, _ := h.store.Sessions(t.Context()); len(sessions) > churnPerDay {
				t.Errorf("day %d: %d sessions stored; want at most a day's people (%d)", day, len(sessions), churnPerDay)
			}
			if day == 1 || day == 10 || day == churnDays {
				figures = append(figures, fmt.Sprintf("day %d: %s", day, s))
			}
			for _, n := range []int{s.seen, s.known, s.byID, s.failed, s.reported, s.recheck, s.stored} {
				if n > bound {
					t.Errorf("day %d: %s; want each at most %d (%d days of %d addresses, and %d configured)",
						day, s, bound, days, churnPerDay, configured)
					break days
				}
			}
		}
		h.stop()
		for _, f := range figures {
			t.Log(f)
		}

		// The configuration's people are never forgotten, named or not.
		ids, _ := h.store.Identities(t.Context())
		if _, ok := ids["ceo@contoso.com"]; !ok {
			t.Error("ceo@contoso.com, a users: target named only on day 0, was forgotten")
		}
		// The first days' guests are.
		if _, ok := ids[churnGuest(1, 0, 0)]; ok {
			t.Errorf("%s, named only on day 1, is still kept on day %d", churnGuest(1, 0, 0), churnDays)
		}

		// Lookups: a guest is named for a day. A known one is looked up
		// when first named and at most once more (its refresh, a day
		// later, as the feed moves on); an unknown one with back-off while
		// named (0, 1h, 2h, 4h, 8h, 16h, and perhaps 24h+). None is looked
		// up once no feed names it: not every day until forgotten, and
		// never every hour.
		lookups := graph.Lookups()
		total, most, mostOf := 0, 0, ""
		var over []string
		for a, n := range lookups {
			total += n
			if !strings.HasPrefix(a, "guest-") {
				continue
			}
			limit := 2
			if strings.HasSuffix(a, fmt.Sprintf("-%d@partner.example", churnUnknownEvery-1)) {
				limit = 7
			}
			if n > limit {
				over = append(over, fmt.Sprintf("%s %d times (want at most %d)", a, n, limit))
			}
			if n > most {
				most, mostOf = n, a
			}
		}
		t.Logf("lookups: %d in %d days for %d addresses (at most %d, of %s)", total, churnDays, len(lookups), most, mostOf)
		if len(over) > 0 {
			slices.Sort(over)
			t.Errorf("%d guests looked up too often, e.g.:\n%s", len(over), strings.Join(over[:min(len(over), 5)], "\n"))
		}
	})
}
