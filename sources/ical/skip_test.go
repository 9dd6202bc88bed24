package ical

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/internal/feedgen"
	"github.com/google/go-cmp/cmp"
)

// skipDiff expands data with and without skipping the VEVENTs that cannot
// reach the window, and returns how the two differ ("" when they do not)
// and how many VEVENTs were skipped.
func skipDiff(data []byte, opt ExpandOptions) (diff string, skipped int) {
	all := opt
	all.decodeAll = true
	want, wantErr := ParseExpand(data, all)
	got, gotErr := ParseExpand(data, opt)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		return fmt.Sprintf("error %v; without skipping %v", gotErr, wantErr), 0
	}
	if got == nil || want == nil {
		return "", 0
	}
	skipped = got.skipped
	if want.skipped != 0 {
		return fmt.Sprintf("%d VEVENTs skipped with skipping off", want.skipped), skipped
	}
	g := *got
	g.skipped = 0
	return cmp.Diff(want, &g, cmp.AllowUnexported(Result{})), skipped
}

// calendarFiles returns every file under testdata (the corpus included),
// whatever it holds.
func calendarFiles(tb testing.TB) []string {
	var files []string
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return files
}

var reTimeValue = regexp.MustCompile(`(?m)^(?i:DTSTART|DTEND|RECURRENCE-ID|DUE)[^:\r\n]*:(\d{8})(T\d{4,6})?`)

// ownDates returns up to n dates the file's events start or end at,
// spread over them.
func ownDates(data []byte, n int) []time.Time {
	var all []time.Time
	for _, m := range reTimeValue.FindAllSubmatch(data, -1) {
		v := string(m[1]) + "T000000"
		if len(m[2]) >= 5 {
			v = string(m[1]) + string(m[2][:5]) + "00"
		}
		if t, err := time.Parse("20060102T150405", v); err == nil {
			all = append(all, t)
		}
	}
	slices.SortFunc(all, func(a, b time.Time) int { return a.Compare(b) })
	all = slices.Compact(all)
	if len(all) <= n || n == 1 {
		return all[:min(n, len(all))]
	}
	out := make([]time.Time, 0, n)
	for i := range n {
		out = append(out, all[i*(len(all)-1)/(n-1)])
	}
	return out
}

// TestSkipChangesNothing expands every file of testdata (the corpus
// included) and generated history-heavy feeds in many windows, with and
// without skipping: the results (occurrences, warnings, errors) are the
// same.
func TestSkipChangesNothing(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Hour)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	type input struct {
		name string
		data []byte
	}
	var inputs []input
	for _, f := range calendarFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, input{f, data})
	}
	if len(inputs) < corpusSize {
		t.Fatalf("found %d files in testdata; want the corpus's %d at least", len(inputs), corpusSize)
	}
	base := time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)
	for _, st := range []string{"zoom", "webex", "outlook", "google"} {
		g := &feedgen.Generator{Seed: 5, Meetings: 10, History: 150, Base: base, Style: st}
		inputs = append(inputs, input{"history/" + st, g.Feed(nil, 2)})
	}

	windows, files, skipped := 0, 0, 0
	for _, in := range inputs {
		var opts []ExpandOptions
		add := func(from, to time.Time) {
			opts = append(opts, ExpandOptions{From: from, To: to})
		}
		add(now.Add(-time.Hour), now.Add(36*time.Hour))
		add(utc("2030-01-01T00:00:00Z"), utc("2030-02-01T00:00:00Z"))
		add(utc("1900-01-01T00:00:00Z"), utc("1900-01-02T00:00:00Z"))
		add(utc("2100-01-01T00:00:00Z"), utc("2100-01-02T12:00:00Z"))
		add(base.Add(7*time.Hour), base.Add(44*time.Hour))
		for _, d := range ownDates(in.data, 6) {
			// Around the date, and where it is just beyond the slack
			// (two days), in UTC and as a wall clock anywhere on Earth.
			add(d.Add(-time.Hour), d.Add(36*time.Hour))
			for _, h := range []int{24, 47, 49, 72} {
				add(d.Add(time.Duration(h)*time.Hour), d.Add(time.Duration(h+36)*time.Hour))
			}
		}
		for i := range opts {
			// In turn: a configured zone, caps, a zone west of UTC.
			switch i % 4 {
			case 1:
				opts[i].Zone = berlin
			case 2:
				opts[i].MaxPerEvent, opts[i].MaxOccurrences = 2, 3
			case 3:
				opts[i].Zone, opts[i].MaxEvents = time.FixedZone("-1130", -41400), 40
			}
		}
		any := false
		for _, opt := range opts {
			d, n := skipDiff(in.data, opt)
			if d != "" {
				t.Errorf("%s, window %s..%s, zone %v: results differ with skipping (-without +with):\n%s",
					in.name, opt.From.Format(time.RFC3339), opt.To.Format(time.RFC3339), opt.Zone, d)
			}
			windows++
			skipped += n
			any = any || n > 0
		}
		if any {
			files++
		}
	}
	t.Logf("%d inputs × windows = %d expansions, %d skipped VEVENTs in all, %d inputs with some skipped", len(inputs), windows, skipped, files)
	if files < 40 {
		t.Errorf("VEVENTs were skipped in %d inputs; want at least 40 (the test would not test skipping)", files)
	}
}

// TestSkipTraps: the cases where a VEVENT that looks past is not, or where
// skipping it would change what is reported. Each is expanded with and
// without skipping (the same result) and checked against what it must give.
func TestSkipTraps(t *testing.T) {
	from := utc("2024-03-11T08:00:00Z") // a Monday
	const past = "20240301T100000"      // well before the window
	tests := []struct {
		name    string
		data    []byte
		skipped int      // VEVENTs skipped undecoded
		want    []string // occurrences: start/end summary
		warn    string   // a warning there must be
		dropped string   // a Dropped warning there must be
	}{
		{
			name: "floating time west of UTC: the wall clock ends before the window, the instant in it",
			data: vcal("X-WR-TIMEZONE:Pacific/Pago_Pago",
				ev("UID:late", "DTSTART:20240310T200000", "DTEND:20240311T000000", "SUMMARY:late"),
				ev("UID:old", "DTSTART:"+past, "DTEND:20240301T110000", "SUMMARY:old")),
			skipped: 1,
			want:    []string{"2024-03-11T07:00Z/2024-03-11T11:00Z late"},
		},
		{
			name: "TZID west of UTC",
			data: vcal(ev("UID:late", "DTSTART;TZID=Pacific/Pago_Pago:20240310T200000", "DTEND;TZID=Pacific/Pago_Pago:20240311T000000", "SUMMARY:late"),
				ev("UID:old", "DTSTART;TZID=Pacific/Pago_Pago:"+past, "DTEND;TZID=Pacific/Pago_Pago:20240301T110000", "SUMMARY:old")),
			skipped: 1,
			want:    []string{"2024-03-11T07:00Z/2024-03-11T11:00Z late"},
		},
		{
			name: "an unknown TZID first seen in a past event: its warning names that event",
			data: vcal(ev("UID:old", "DTSTART;TZID=Mars/Olympus:"+past, "DTEND;TZID=Mars/Olympus:20240301T110000"),
				ev("UID:now", "DTSTART;TZID=Mars/Olympus:20240311T100000", "DTEND;TZID=Mars/Olympus:20240311T110000", "SUMMARY:now"),
				ev("UID:older", "DTSTART;TZID=Mars/Olympus:20240201T100000", "DTEND;TZID=Mars/Olympus:20240201T110000")),
			want: []string{"2024-03-11T10:00Z/2024-03-11T11:00Z now"},
			warn: `line 6: UID "old": unknown TZID "Mars/Olympus", using UTC`,
		},
		{
			name: "an unknown X-WR-TIMEZONE read first by a past event",
			data: vcal("X-WR-TIMEZONE:Mars/Olympus",
				ev("UID:old", "DTSTART:"+past, "DTEND:20240301T110000"),
				ev("UID:older", "DTSTART;VALUE=DATE:20240201")),
			warn: `unknown TZID "Mars/Olympus", using UTC`,
		},
		{
			name: "a VTIMEZONE that cannot be used, named by a past event",
			data: vcal("BEGIN:VTIMEZONE\r\nTZID:Broken Zone\r\nBEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nEND:STANDARD\r\nEND:VTIMEZONE",
				ev("UID:old", "DTSTART;TZID=Broken Zone:"+past, "DTEND;TZID=Broken Zone:20240301T110000")),
			warn: `line 12: UID "old": VTIMEZONE "Broken Zone": no usable STANDARD or DAYLIGHT observance`,
		},
		{
			name: "a zone defined by the file's VTIMEZONE (Webex): skipped",
			data: vcal(webexVTZ,
				ev("UID:old", `DTSTART;TZID="(UTC-08:00) Pacific Time (US & Canada)":`+past, `DTEND;TZID="(UTC-08:00) Pacific Time (US & Canada)":20240301T110000`),
				ev("UID:now", `DTSTART;TZID="(UTC-08:00) Pacific Time (US & Canada)":20240311T080000`, "DURATION:PT1H", "SUMMARY:now")),
			skipped: 1,
			want:    []string{"2024-03-11T15:00Z/2024-03-11T16:00Z now"},
		},
		{
			name: "all-day days that reach into the window",
			data: vcal(ev("UID:week", "DTSTART;VALUE=DATE:20240305", "DTEND;VALUE=DATE:20240312", "SUMMARY:week"),
				ev("UID:day", "DTSTART;VALUE=DATE:20240301", "SUMMARY:day")),
			skipped: 1,
			want:    []string{"2024-03-05T00:00Z/2024-03-12T00:00Z week"},
		},
		{
			name: "an all-day day without DTEND, on the wall clock of the day before",
			data: vcal("X-WR-TIMEZONE:Pacific/Pago_Pago",
				ev("UID:sunday", "DTSTART;VALUE=DATE:20240310", "SUMMARY:sunday"),
				ev("UID:day", "DTSTART;VALUE=DATE:20240301", "SUMMARY:day")),
			skipped: 1,
			want:    []string{"2024-03-10T11:00Z/2024-03-11T11:00Z sunday"},
		},
		{
			name: "DURATION instead of DTEND, days and weeks",
			data: vcal(ev("UID:long", "DTSTART:"+past+"Z", "DURATION:P10D", "SUMMARY:long"),
				ev("UID:weeks", "DTSTART:"+past+"Z", "DURATION:P2W", "SUMMARY:weeks"),
				ev("UID:hour", "DTSTART:"+past+"Z", "DURATION:PT1H"),
				ev("UID:week", "DTSTART:"+past+"Z", "DURATION:P1W")),
			skipped: 2,
			want:    []string{"2024-03-01T10:00Z/2024-03-11T10:00Z long", "2024-03-01T10:00Z/2024-03-15T10:00Z weeks"},
		},
		{
			name: "an override moves a past meeting into the window and inherits its summary",
			data: vcal(ev("UID:m", "DTSTART:"+past+"Z", "DURATION:PT1H", "SUMMARY:standup"),
				ev("UID:m", "RECURRENCE-ID:"+past+"Z", "DTSTART:20240311T120000Z", "DURATION:PT1H")),
			want: []string{"2024-03-11T12:00Z/2024-03-11T13:00Z standup"},
		},
		{
			name: "the master after its override",
			data: vcal(ev("UID:m", "RECURRENCE-ID:"+past+"Z", "DTSTART:20240311T120000Z", "DURATION:PT1H"),
				ev("UID:m", "DTSTART:"+past+"Z", "DURATION:PT1H", "SUMMARY:standup")),
			want: []string{"2024-03-11T12:00Z/2024-03-11T13:00Z standup"},
		},
		{
			name: "an override of a recurring series that ended, moved into the window",
			data: vcal(ev("UID:s", "DTSTART:20240101T100000Z", "DURATION:PT1H", "RRULE:FREQ=WEEKLY;COUNT=3", "SUMMARY:series"),
				ev("UID:s", "RECURRENCE-ID:20240108T100000Z", "DTSTART:20240311T150000Z", "DURATION:PT1H")),
			want: []string{"2024-03-11T15:00Z/2024-03-11T16:00Z series"},
		},
		{
			name: "RANGE=THISANDFUTURE in the past moves the instances in the window",
			data: vcal(ev("UID:s", "DTSTART:20240101T100000Z", "DURATION:PT1H", "RRULE:FREQ=WEEKLY", "SUMMARY:series"),
				ev("UID:s", "RECURRENCE-ID;RANGE=THISANDFUTURE:20240108T100000Z", "DTSTART:20240108T140000Z", "DURATION:PT1H", "SUMMARY:later"),
				ev("UID:old", "DTSTART:"+past+"Z", "DURATION:PT1H")),
			skipped: 1,
			want:    []string{"2024-03-11T14:00Z/2024-03-11T15:00Z later"},
		},
		{
			name: "a past revision (higher SEQUENCE) supersedes a copy in the window",
			data: vcal(ev("UID:r", "SEQUENCE:0", "DTSTART:20240311T100000Z", "DURATION:PT1H", "SUMMARY:stale"),
				ev("UID: r ", "SEQUENCE:1", "DTSTART:"+past+"Z", "DURATION:PT1H", "SUMMARY:moved back")),
			warn: "SEQUENCE 1 supersedes 1 older",
		},
		{
			name: "one UID on a past and a present meeting: both count, with the warning",
			data: vcal(ev("UID:u", "DTSTART:"+past+"Z", "DURATION:PT1H"),
				ev("UID:u", "DTSTART:20240311T100000Z", "DURATION:PT1H", "SUMMARY:now")),
			want: []string{"2024-03-11T10:00Z/2024-03-11T11:00Z now"},
			warn: "2 VEVENTs with this UID and SEQUENCE 0 but different DTSTARTs",
		},
		{
			name: "one UID in two calendars of one feed",
			data: append(vcal(ev("UID:u", "SEQUENCE:3", "DTSTART:"+past+"Z", "DURATION:PT1H")),
				vcal(ev("UID:u", "DTSTART:20240311T100000Z", "DURATION:PT1H", "SUMMARY:stale"))...),
			warn: "SEQUENCE 3 supersedes 1 older",
		},
		{
			name: "DTEND before DTSTART, long ago",
			data: vcal(ev("UID:w", "DTSTART:20200102T100000Z", "DTEND:20200101T100000Z")),
			warn: `UID "w": DTEND before DTSTART, swapped`,
		},
		{
			name: "DTEND before DTSTART only as instants, in a DST gap",
			data: vcal(ev("UID:gap", "DTSTART;TZID=America/New_York:20210314T023000", "DTEND;TZID=America/New_York:20210314T031000")),
			warn: `UID "gap": DTEND before DTSTART, swapped`,
		},
		{
			name:    "a DTSTART that cannot be read",
			data:    vcal(ev("UID:bad", "DTSTART:2020-01-01")),
			dropped: `UID "bad": VEVENT skipped: DTSTART: invalid value "2020-01-01"`,
		},
		{
			name:    "a DTEND that cannot be read",
			data:    vcal(ev("UID:bad", "DTSTART:20200101T100000Z", "DTEND:soon")),
			dropped: `UID "bad": DTEND: invalid value "soon", ignored`,
		},
		{
			name:    "a DURATION that cannot be read, or negative",
			data:    vcal(ev("UID:bad", "DTSTART:20200101T100000Z", "DURATION:P"), ev("UID:neg", "DTSTART:20200101T100000Z", "DURATION:-PT1H")),
			dropped: `UID "neg": invalid DURATION "-PT1H", ignored`,
		},
		{
			name:    "no DTSTART",
			data:    vcal(ev("UID:none", "DTEND:20200101T100000Z")),
			dropped: `UID "none": VEVENT skipped: no DTSTART`,
		},
		{
			name: "an EXDATE that cannot be read on a single past event",
			data: vcal(ev("UID:x", "DTSTART:20200101T100000Z", "DURATION:PT1H", "EXDATE:never")),
			warn: `UID "x": EXDATE: invalid value "never", ignored`,
		},
		{
			name: "a parameter name that only upper-cases to TZID",
			data: vcal(ev("UID:dotless", "DTSTART;TZıD=Mars/Olympus:20200101T100000", "DURATION:PT1H")),
			warn: `UID "dotless": unknown TZID "Mars/Olympus", using UTC`,
		},
		{
			name:    "lower-case, folded and quoted time lines",
			data:    vcal(ev("uid:f", "dtstart;value=date-time;tzid=\"Europe/Berlin\":2020\r\n 0101T100000", "dtend;tzid=Europe/Berlin:20200101T1\r\n\t10000")),
			skipped: 1,
		},
		{
			name:    "VEVENTs without a UID, or with a blank one",
			data:    vcal(ev("DTSTART:"+past+"Z"), ev("UID:", "DTSTART:"+past+"Z"), ev("UID:ok", "DTSTART:"+past+"Z")),
			skipped: 1,
		},
		{
			name: "bare VEVENTs without VCALENDAR",
			data: feed(ev("UID:a", "DTSTART:"+past+"Z", "DURATION:PT1H"), ev("UID:b", "DTSTART:20240311T100000Z", "DURATION:PT1H", "SUMMARY:b"),
				ev("UID:c", "DTSTART:"+past+"Z")),
			skipped: 2,
			want:    []string{"2024-03-11T10:00Z/2024-03-11T11:00Z b"},
		},
		{
			name: "stray text and blank lines between the VEVENTs (the scanner rewrites the feed)",
			data: feed("BEGIN:VCALENDAR", "",
				ev("UID:a", "DTSTART:"+past+"Z", "DESCRIPTION:Join", "Meeting ID: 834 1234 5678", "DURATION:PT1H"), "",
				"just text", "", "",
				ev("UID:b", "DTSTART:"+past+"Z", "DURATION:PT1H"), "Passcode: 123", "",
				ev("UID:c", "DTSTART:20240311T100000Z", "DURATION:PT1H", "SUMMARY:c"), "\r",
				ev("UID:d", "DTSTART:"+past+"Z", "DURATION:PT1H"),
				"END:VCALENDAR"),
			skipped: 3,
			want:    []string{"2024-03-11T10:00Z/2024-03-11T11:00Z c"},
		},
		{
			name: "LF line ends, a VALARM left open, and a VEVENT left open",
			data: []byte(strings.ReplaceAll(string(vcal(
				ev("UID:a", "DTSTART:"+past+"Z", "BEGIN:VALARM", "TRIGGER:-PT5M"),
				ev("UID:b", "DTSTART:"+past+"Z", "DURATION:PT1H"),
				"BEGIN:VEVENT", "UID:c", "DTSTART:"+past+"Z")), "\r\n", "\n")),
			skipped: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := ExpandOptions{From: from, To: from.Add(36 * time.Hour)}
			d, skipped := skipDiff(tt.data, opt)
			if d != "" {
				t.Errorf("results differ with skipping (-without +with):\n%s", d)
			}
			if skipped != tt.skipped {
				t.Errorf("%d VEVENTs skipped; want %d", skipped, tt.skipped)
			}
			res, err := ParseExpand(tt.data, opt)
			if err != nil {
				t.Fatal(err)
			}
			checkNoPanic(t, tt.name, res, err)
			var got []string
			for _, o := range res.Occurrences {
				got = append(got, o.Start.Format("2006-01-02T15:04Z")+"/"+o.End.Format("2006-01-02T15:04Z")+" "+o.Summary)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Expand mismatch (-want +got):\n%s\nwarnings: %q", diff, res.Warnings)
			}
			if tt.warn != "" && !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, tt.warn) }) {
				t.Errorf("Expand warnings = %q; want one containing %q", res.Warnings, tt.warn)
			}
			if tt.dropped != "" && !slices.ContainsFunc(res.Dropped, func(w string) bool { return strings.Contains(w, tt.dropped) }) {
				t.Errorf("Expand Dropped = %q; want one containing %q", res.Dropped, tt.dropped)
			}
		})
	}
}

// TestSkipWindowMoves: a stored copy is expanded again, later, for later
// windows (and a Calendar parsed for one window may be expanded for
// another): each expansion decides afresh, so a meeting skipped for one
// window is there for a window it reaches.
func TestSkipWindowMoves(t *testing.T) {
	base := time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)
	data := (&feedgen.Generator{Seed: 9, Meetings: 8, History: 300, Base: base, Style: "mixed"}).Feed(nil, 1)
	var windows []time.Time
	for _, days := range []int{-120, -30, -8, -3, -2, -1, 0, 1, 2, 7} {
		windows = append(windows, base.AddDate(0, 0, days).Add(9*time.Hour))
	}
	// Later, and back again: nothing carries over from one to the next.
	for _, from := range append(windows, windows[3], windows[0]) {
		opt := ExpandOptions{From: from.Add(-time.Hour), To: from.Add(36 * time.Hour)}
		if d, _ := skipDiff(data, opt); d != "" {
			t.Errorf("window from %s: results differ with skipping (-without +with):\n%s", opt.From, d)
		}
	}
	// Parsed for the last window, expanded for each earlier one: the
	// VEVENTs left undecoded that reach it are decoded then.
	last := windows[len(windows)-1]
	for _, from := range windows {
		opt := ExpandOptions{From: from, To: from.Add(36 * time.Hour)}
		cal, err := parse(data, scanFeed, 0, last)
		if err != nil {
			t.Fatal(err)
		}
		got := cal.Expand(opt)
		opt.decodeAll = true
		want, err := ParseExpand(data, opt)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Occurrences) == 0 && from.Before(base) {
			t.Errorf("window from %s: no occurrences; want the past meetings of that day", from)
		}
		got.skipped = 0
		if d := cmp.Diff(want, got, cmp.AllowUnexported(Result{})); d != "" {
			t.Errorf("parsed for %s, expanded from %s: results differ (-decoded +skipping):\n%s", last, from, d)
		}
	}
}

// TestSkipStillCounts: VEVENTs skipped undecoded count in Result.Events
// and against MaxEvents, as decoded ones do.
func TestSkipStillCounts(t *testing.T) {
	var parts []string
	for i := range 10 {
		parts = append(parts, ev(fmt.Sprintf("UID:%d", i), fmt.Sprintf("DTSTART:202001%02dT100000Z", i+1), "DURATION:PT1H"))
	}
	data := vcal(parts...)
	opt := ExpandOptions{From: utc("2024-03-11T08:00:00Z"), To: utc("2024-03-12T20:00:00Z"), MaxEvents: 10}
	res, err := ParseExpand(data, opt)
	if err != nil || res.Events != 10 || res.skipped != 10 {
		t.Fatalf("ParseExpand(10 past events, MaxEvents 10) = %+v, %v; want 10 events, all skipped", res, err)
	}
	opt.MaxEvents = 9
	if _, err := ParseExpand(data, opt); !errors.Is(err, ErrOverLimit) {
		t.Errorf("ParseExpand(10 past events, MaxEvents 9) error = %v; want ErrOverLimit", err)
	}
}

// TestSkipAllocations: skipped VEVENTs cost no allocations of their own.
func TestSkipAllocations(t *testing.T) {
	base := time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)
	opt := ExpandOptions{From: base.Add(7 * time.Hour), To: base.Add(44 * time.Hour)}
	for _, st := range []string{"zoom", "webex", "outlook", "google"} {
		g := &feedgen.Generator{Seed: 1, Meetings: 5, Base: base, Style: st}
		allocs := func(history int) float64 {
			g.History = history
			data := g.Feed(nil, 0)
			return testing.AllocsPerRun(3, func() {
				if _, err := ParseExpand(data, opt); err != nil {
					t.Fatal(err)
				}
			})
		}
		few, many := allocs(100), allocs(4000)
		// The slices of per-VEVENT records grow by doubling: a few
		// allocations more for 40 times the VEVENTs.
		if many-few > 40 {
			t.Errorf("%s: ParseExpand allocates %.0f times with 100 past meetings, %.0f with 4,000; want at most 40 more", st, few, many)
		}
		t.Logf("%s: %.0f allocations with 100 past meetings, %.0f with 4,000", st, few, many)
	}
}

// FuzzSkipChangesNothing: for any input and window, skipping the VEVENTs
// that cannot reach the window changes nothing.
//
//	go test -run '^$' -fuzz FuzzSkipChangesNothing -fuzztime 60s ./sources/
func FuzzSkipChangesNothing(f *testing.F) {
	if files, err := filepath.Glob(filepath.Join(corpusDir, "ics", "*", "*.ics")); err == nil {
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				if d := ownDates(data, 1); len(d) > 0 {
					f.Add(data, d[0].Unix()/3600+60)
				}
			}
		}
	}
	past := "DTSTART;TZID=America/New_York:20240301T100000"
	f.Add(vcal(ev("UID:a", past, "DURATION:PT1H"), ev("UID:b", past, "DTEND;VALUE=DATE:20240302")), int64(474650))
	f.Add(vcal("X-WR-TIMEZONE:Pacific/Pago_Pago", ev("UID:a", "DTSTART;VALUE=DATE:20240310"), ev("UID:a", "RECURRENCE-ID;VALUE=DATE:20240310", "DTSTART;VALUE=DATE:20240311")), int64(474680))
	f.Fuzz(func(t *testing.T, data []byte, hour int64) {
		if hour < -1e6 || hour > 1e6 {
			return
		}
		from := time.Unix(hour*3600, 0).UTC()
		if d, _ := skipDiff(data, ExpandOptions{From: from, To: from.Add(36 * time.Hour), MaxPerEvent: 50}); d != "" {
			t.Fatalf("window from %s: results differ with skipping (-without +with):\n%s", from, d)
		}
	})
}
