package ical

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCrosscheckVerdicts pins what calpresence does where the ical.js
// oracle disagrees on the corpus and calpresence is right
// (docs/crosscheck.md). Each case is the corpus file's event, cut down.
func TestCrosscheckVerdicts(t *testing.T) {
	tests := []struct {
		name     string
		file     string // the corpus file it comes from
		data     []byte
		from, to string
		want     []string
		warn     string // a substring of some warning; "" means none at all
	}{
		{
			// RFC 5545 3.3.4: a DATE has no UTC form; the Z is noise. The
			// oracle reads these RDATEs as dates too; they used to be
			// dropped as invalid.
			name: "DATE with a stray Z in RDATE",
			file: "ical.js/google_birthday.ics",
			data: vcal(ev("UID:2014_BIRTHDAY", "DTSTART;VALUE=DATE:20141210", "DTEND;VALUE=DATE:20141211",
				"RRULE:FREQ=DAILY;INTERVAL=1;COUNT=1", "RDATE:20131210Z", "RDATE:20121210Z")),
			from: "2012-01-01T00:00:00Z", to: "2016-01-01T00:00:00Z",
			want: []string{"2012-12-10T00:00Z/2012-12-11T00:00Z allday", "2013-12-10T00:00Z/2013-12-11T00:00Z allday",
				"2014-12-10T00:00Z/2014-12-11T00:00Z allday"},
		},
		{
			// RFC 5545 3.8.2.5 wants days or weeks with a DATE DTSTART;
			// Google writes PT86400S. ical.js adds seconds to a DATE and
			// gets a zero-length event; the writer meant one day.
			name: "DATE with DURATION:PT86400S lasts a day",
			file: "ical4j/google_aus_holidays.ics",
			data: vcal(ev("UID:newyear", "DTSTART:20020101", "DURATION:PT86400S", "RRULE:FREQ=YEARLY;INTERVAL=1;BYMONTH=1")),
			from: "2038-01-01T00:00:00Z", to: "2039-01-01T00:00:00Z",
			want: []string{"2038-01-01T00:00Z/2038-01-02T00:00Z allday"},
		},
		{
			// A negative DURATION (and P1W1D mixes weeks and days, RFC 5545
			// 3.3.6) is ignored; a DATE DTSTART without a usable end lasts
			// one day (3.6.1). The oracle prints an end before the start.
			name: "DATE with a negative DURATION lasts a day",
			file: "node-ical/bad_custom_ms_tz.ics",
			data: vcal(ev("UID:masked2", "DTSTART;VALUE=DATE:20210401", "DURATION:-PT1W1D2H3M4S")),
			from: "2021-03-01T00:00:00Z", to: "2021-05-01T00:00:00Z",
			want: []string{"2021-04-01T00:00Z/2021-04-02T00:00Z allday"},
			warn: `invalid DURATION "-PT1W1D2H3M4S", ignored`,
		},
		{
			// RFC 5545 3.8.2.4 / 3.8.5.2: DTSTART is the first instance,
			// also when the only recurrence property is RDATE.
			name: "DTSTART and an RDATE period with another TZID",
			file: "icalendar/issue_722_missing_timezones.ics",
			data: vcal(ev("DTSTART;TZID=America/New_York;VALUE=DATE-TIME:20140829T080000",
				"DTEND;TZID=America/Los_Angeles;VALUE=DATE-TIME:20140829T080000",
				"RDATE;VALUE=PERIOD;TZID=Europe/Berlin:20240913T120000/PT2H")),
			from: "2014-01-01T00:00:00Z", to: "2025-01-01T00:00:00Z",
			want: []string{"2014-08-29T12:00Z/2014-08-29T15:00Z", "2024-09-13T10:00Z/2024-09-13T12:00Z"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := ParseExpand(tt.data, ExpandOptions{From: utc(tt.from), To: utc(tt.to)})
			if err != nil {
				t.Fatalf("ParseExpand (%s) failed: %v", tt.file, err)
			}
			if diff := cmp.Diff(tt.want, brief(res)); diff != "" {
				t.Errorf("Expand (%s) mismatch (-want +got):\n%s", tt.file, diff)
			}
			if tt.warn == "" && len(res.Warnings) > 0 {
				t.Errorf("Expand (%s) warnings = %q; want none", tt.file, res.Warnings)
			}
			if tt.warn != "" && !strings.Contains(strings.Join(res.Warnings, "\n"), tt.warn) {
				t.Errorf("Expand (%s) warnings = %q; want one containing %q", tt.file, res.Warnings, tt.warn)
			}
		})
	}
}

// TestInvalidRDATEWarning: the warning names the property once.
func TestInvalidRDATEWarning(t *testing.T) {
	res, err := ParseExpand(vcal(ev("UID:a", "DTSTART:20240101T100000Z", "RDATE:2024XX01T100000Z")),
		ExpandOptions{From: utc("2024-01-01T00:00:00Z"), To: utc("2024-02-01T00:00:00Z")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`line 7: UID "a": RDATE: invalid value "2024XX01T100000Z", ignored`}
	if diff := cmp.Diff(want, res.Warnings); diff != "" {
		t.Errorf("Expand(RDATE:2024XX01T100000Z) warnings mismatch (-want +got):\n%s", diff)
	}
}

func TestParseDTStrayZ(t *testing.T) {
	for _, v := range []string{"20131210Z", "20131210z", "20131210"} {
		got, err := parseDT(v, false)
		if err != nil || got.kind != kindDate || got.wall != utc("2013-12-10T00:00:00Z") {
			t.Errorf("parseDT(%q) = %v, %d, %v; want 2013-12-10, kindDate, nil", v, got.wall, got.kind, err)
		}
	}
	for _, v := range []string{"20131210ZZ", "20131210X", "20131232Z"} {
		if got, err := parseDT(v, false); err == nil {
			t.Errorf("parseDT(%q) = %v, %d, nil; want an error", v, got.wall, got.kind)
		}
	}
}
