package plan

import (
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/sources/ical"
)

func TestMatch(t *testing.T) {
	yes, no := true, false
	base := ical.Occurrence{UID: "u", Start: t0, End: t0.Add(time.Hour), Status: "CONFIRMED", Summary: "Zoom sync",
		Organizer: "bob@contoso.com",
		Attendees: []ical.Attendee{
			{Email: "alice@partner.example", PartStat: "ACCEPTED"},
			{Email: "carol@contoso.com", PartStat: "DECLINED"},
			{Email: "dave@contoso.com", PartStat: "TENTATIVE"},
			{Email: "eve@elsewhere.example", PartStat: "ACCEPTED"},
		}}
	with := func(f func(o *ical.Occurrence)) ical.Occurrence { o := base; f(&o); return o }
	type got struct{ User, Skip string }
	tests := []struct {
		name string
		src  config.Source
		occ  ical.Occurrence
		want []got
	}{
		{"attendees in domains, mapped, declined skipped", config.Source{Match: "attendees", Domains: []string{"contoso.com", "partner.example"}},
			base, []got{{"bob@contoso.com", ""}, {"alice@contoso.com", ""}, {"carol@contoso.com", SkipDeclined}, {"dave@contoso.com", ""}}},
		{"declined kept when skip.declined is false", config.Source{Match: "attendees", Domains: []string{"contoso.com"}, Skip: config.Skip{Declined: &no}},
			base, []got{{"bob@contoso.com", ""}, {"carol@contoso.com", ""}, {"dave@contoso.com", ""}}},
		{"tentative skipped with skip.tentative", config.Source{Match: "attendees", Domains: []string{"contoso.com"}, Skip: config.Skip{Tentative: &yes}},
			base, []got{{"bob@contoso.com", ""}, {"carol@contoso.com", SkipDeclined}, {"dave@contoso.com", SkipTentative}}},
		{"organizer only", config.Source{Match: "organizer"}, base, []got{{"bob@contoso.com", ""}}},
		{"fixed users; a fixed user who declined is skipped", config.Source{Users: []string{"carol@contoso.com", "zed@contoso.com"}},
			base, []got{{"carol@contoso.com", SkipDeclined}, {"zed@contoso.com", ""}}},
		{"cancelled", config.Source{Users: []string{"zed@contoso.com"}},
			with(func(o *ical.Occurrence) { o.Status = "CANCELLED" }), []got{{"zed@contoso.com", SkipCancelled}}},
		{"transparent", config.Source{Users: []string{"zed@contoso.com"}},
			with(func(o *ical.Occurrence) { o.Transparent = true }), []got{{"zed@contoso.com", SkipTransparent}}},
		{"transparent kept", config.Source{Users: []string{"zed@contoso.com"}, Skip: config.Skip{Transparent: &no}},
			with(func(o *ical.Occurrence) { o.Transparent = true }), []got{{"zed@contoso.com", ""}}},
		{"all day", config.Source{Users: []string{"zed@contoso.com"}},
			with(func(o *ical.Occurrence) { o.AllDay = true }), []got{{"zed@contoso.com", SkipAllDay}}},
		{"zero length", config.Source{Users: []string{"zed@contoso.com"}},
			with(func(o *ical.Occurrence) { o.End = o.Start }), []got{{"zed@contoso.com", SkipZeroLength}}},
		{"include must match every set field", config.Source{Users: []string{"zed@contoso.com"}, Include: config.Filter{Summary: "(?i)zoom", Location: "zoom\\.us"}},
			base, []got{{"zed@contoso.com", SkipNotIncluded}}},
		{"include matches", config.Source{Users: []string{"zed@contoso.com"}, Include: config.Filter{Summary: "(?i)zoom"}},
			base, []got{{"zed@contoso.com", ""}}},
		{"exclude", config.Source{Users: []string{"zed@contoso.com"}, Exclude: config.Filter{Summary: "(?i)sync"}},
			base, []got{{"zed@contoso.com", SkipExcluded}}},
		{"status tentative with skip.tentative", config.Source{Users: []string{"zed@contoso.com"}, Skip: config.Skip{Tentative: &yes}},
			with(func(o *ical.Occurrence) { o.Status = "TENTATIVE" }), []got{{"zed@contoso.com", SkipTentative}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.src.Name = "s"
			cfg := &config.Config{Presence: config.Presence{Availability: presence.Busy, Activity: presence.ActivityInAConferenceCall, MergeGap: 2 * time.Minute, MaxLease: 4 * time.Hour}, Sources: []config.Source{tt.src},
				Users: []config.User{{Email: "Alice@Partner.example", User: "alice@contoso.com"}}}
			m, err := NewMatcher(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var gotList []got
			for _, mt := range m.Match("s", []ical.Occurrence{tt.occ}) {
				gotList = append(gotList, got{mt.User, mt.Skip})
			}
			if diff := cmp.Diff(tt.want, gotList); diff != "" {
				t.Errorf("Match (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCovers: who the configuration covers, for calendars and signals
// alike. A source matching attendees or organizers without domains admits
// any address, as its calendar matching does; only_configured limits a
// source to the people the configuration names.
func TestCovers(t *testing.T) {
	yes := true
	fixed := config.Source{Name: "fixed", Users: []string{"Zed@Contoso.com"}}
	mapped := config.User{Email: "alice@partner.example", User: "alice@contoso.com"}
	tests := []struct {
		name    string
		sources []config.Source
		covered []string
		not     []string
	}{
		{"fixed users and users: entries, either side", []config.Source{fixed},
			[]string{"zed@contoso.com", "ZED@contoso.com", "mailto:zed@contoso.com", "alice@partner.example", "alice@contoso.com"},
			[]string{"bob@contoso.com", "", "nobody"}},
		{"match: attendees with domains", []config.Source{fixed, {Name: "a", Match: config.MatchAttendees, Domains: []string{"@contoso.com"}}},
			[]string{"bob@contoso.com", "Bob@CONTOSO.com", "alice@partner.example"},
			[]string{"eve@elsewhere.example", "bob@sub.contoso.com"}},
		{"match: attendees without domains covers any address", []config.Source{fixed, {Name: "a", Match: config.MatchAttendees}},
			[]string{"bob@contoso.com", "eve@elsewhere.example"},
			[]string{""}},
		{"match: organizer without domains too", []config.Source{{Name: "o", Match: "organizer"}},
			[]string{"eve@elsewhere.example"}, nil},
		{"only_configured: the people named alone", []config.Source{fixed, {Name: "a", Match: config.MatchAttendees, OnlyConfigured: &yes}},
			[]string{"zed@contoso.com", "alice@contoso.com"},
			[]string{"bob@contoso.com", "eve@elsewhere.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{Sources: tt.sources, Users: []config.User{mapped}}
			m, err := NewMatcher(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range tt.covered {
				if !m.Covers(a) {
					t.Errorf("Covers(%q) = false; want true", a)
				}
			}
			for _, a := range tt.not {
				if m.Covers(a) {
					t.Errorf("Covers(%q) = true; want false", a)
				}
			}
			limited := slices.ContainsFunc(tt.sources, func(s config.Source) bool { return s.OnlyConfigured != nil })
			if got := m.Limited(); got != limited {
				t.Errorf("Limited() = %v; want %v", got, limited)
			}
			for _, s := range tt.sources {
				if got, want := m.OnlyConfigured(s.Name), s.OnlyConfigured != nil; got != want {
					t.Errorf("OnlyConfigured(%q) = %v; want %v", s.Name, got, want)
				}
			}
		})
	}
}

// TestMatchAgreesWithCovers: every person an attendees source matches
// without domains is one the configuration covers.
func TestMatchAgreesWithCovers(t *testing.T) {
	cfg := &config.Config{Sources: []config.Source{{Name: "a", Match: config.MatchAttendees}}}
	m, err := NewMatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o := ical.Occurrence{UID: "u", Start: t0, End: t0.Add(time.Hour), Organizer: "bob@contoso.com",
		Attendees: []ical.Attendee{{Email: "eve@elsewhere.example", PartStat: "ACCEPTED"}}}
	got := m.Match("a", []ical.Occurrence{o})
	if len(got) != 2 {
		t.Fatalf("Match = %v; want bob and eve", got)
	}
	for _, mt := range got {
		if !m.Covers(mt.User) {
			t.Errorf("Match names %s, but Covers(%q) = false", mt.User, mt.User)
		}
	}
}

// TestMatchSharesUsers: a configured user written in capitals is named in
// its normalised form, one string for all its matches, not a copy per
// occurrence (100,000 feeds' matches are kept for hours).
func TestMatchSharesUsers(t *testing.T) {
	cfg := config.Default()
	cfg.Users = []config.User{{Email: "Alice@Partner.example", User: "Alice@Contoso.com"}}
	cfg.Sources = []config.Source{
		{Name: "fixed", URL: "https://example.test/a", Users: []string{"Zed@Contoso.com"}},
		{Name: "att", URL: "https://example.test/b", Match: "attendees", Domains: []string{"partner.example"}},
	}
	m, err := NewMatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	occs := make([]ical.Occurrence, 3)
	for i := range occs {
		occs[i] = ical.Occurrence{UID: "u", Start: t0.Add(time.Duration(i) * time.Hour), End: t0.Add(time.Duration(i)*time.Hour + time.Minute),
			Attendees: []ical.Attendee{{Email: "alice@partner.example", PartStat: "ACCEPTED"}}}
	}
	for source, want := range map[string]string{"fixed": "zed@contoso.com", "att": "alice@contoso.com"} {
		got := m.Match(source, occs)
		if len(got) != len(occs) {
			t.Fatalf("Match(%s) = %d matches; want %d", source, len(got), len(occs))
		}
		for i := range got {
			if got[i].User != want {
				t.Errorf("Match(%s)[%d].User = %q; want %q", source, i, got[i].User, want)
			}
			if unsafe.StringData(got[i].User) != unsafe.StringData(got[0].User) {
				t.Errorf("Match(%s)[%d].User is a copy of its own; want one string shared", source, i)
			}
		}
	}
}

// TestMatchKeeps: the matches of one occurrence share one kept copy of
// it, holding what is read after matching and nothing else; occurrences
// nobody matched, first, between and last, leave no copy.
func TestMatchKeeps(t *testing.T) {
	cfg := &config.Config{Sources: []config.Source{{Name: "a", Match: config.MatchAttendees, Domains: []string{"contoso.com"}}}}
	m, err := NewMatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nobody := ical.Occurrence{UID: "nobody", Start: t0, End: t0.Add(time.Hour), Organizer: "eve@elsewhere.example"}
	occs := []ical.Occurrence{
		nobody,
		{UID: "a", Summary: "A", Location: "Room", Description: "dial-in", Organizer: "bob@contoso.com", Status: "CONFIRMED",
			Start: t0, End: t0.Add(30 * time.Minute), Attendees: []ical.Attendee{{Email: "carol@contoso.com", PartStat: "ACCEPTED"}},
			MeetingKeys: []string{"zoom:1"}},
		nobody,
		{UID: "c", RecurrenceID: t0.Add(time.Hour), Transparent: true, AllDay: true, Organizer: "bob@contoso.com",
			Start: t0.Add(time.Hour), End: t0.Add(90 * time.Minute)},
		nobody,
	}
	got := m.Match("a", occs)
	if len(got) != 3 || got[0].User != "bob@contoso.com" || got[1].User != "carol@contoso.com" || got[2].User != "bob@contoso.com" {
		t.Fatalf("Match = %v; want bob and carol for a, bob for c", got)
	}
	if got[0].Occ != got[1].Occ || got[0].Occ == got[2].Occ {
		t.Fatal("the matches of one occurrence do not share one kept copy")
	}
	// One array, an element for each occurrence matched.
	if d := uintptr(unsafe.Pointer(got[2].Occ)) - uintptr(unsafe.Pointer(got[0].Occ)); d != unsafe.Sizeof(Occurrence{}) {
		t.Errorf("the kept copies of a and c are %d bytes apart; want adjacent in one array", d)
	}
	for i, want := range []Occurrence{
		{UID: "a", Summary: "A", Start: t0, End: t0.Add(30 * time.Minute), MeetingKeys: []string{"zoom:1"}},
		{UID: "a", Summary: "A", Start: t0, End: t0.Add(30 * time.Minute), MeetingKeys: []string{"zoom:1"}},
		{UID: "c", RecurrenceID: t0.Add(time.Hour), Start: t0.Add(time.Hour), End: t0.Add(90 * time.Minute)},
	} {
		if diff := cmp.Diff(want, *got[i].Occ); diff != "" {
			t.Errorf("match %d keeps (-want +got):\n%s", i, diff)
		}
	}
	if got := m.Match("a", []ical.Occurrence{nobody}); len(got) != 0 {
		t.Errorf("Match of an occurrence nobody attends = %v; want none", got)
	}
}

// TestMatchSize: the matches and what they keep of their occurrences are
// held for hours, millions of them at 100,000 feeds; a field added to
// either is megabytes there, and should be a choice.
func TestMatchSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are those of a 64-bit platform")
	}
	if n := unsafe.Sizeof(Match{}); n != 64 {
		t.Errorf("a Match is %d bytes; want 64", n)
	}
	if n := unsafe.Sizeof(Occurrence{}); n != 128 {
		t.Errorf("an Occurrence is %d bytes; want 128", n)
	}
}
