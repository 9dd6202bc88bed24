package ical

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// feed builds a CRLF iCalendar body from content lines.
func feed(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// vcal wraps VEVENTs (and VTIMEZONEs) in a VCALENDAR.
func vcal(parts ...string) []byte {
	return feed(append(append([]string{"BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN"}, parts...), "END:VCALENDAR")...)
}

func ev(props ...string) string {
	return strings.Join(append(append([]string{"BEGIN:VEVENT"}, props...), "END:VEVENT"), "\r\n")
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// brief renders occurrences compactly: "start/end" in UTC, then flags.
func brief(res *Result) []string {
	var out []string
	for _, o := range res.Occurrences {
		s := o.Start.Format("2006-01-02T15:04Z") + "/" + o.End.Format("2006-01-02T15:04Z")
		if o.Status == "CANCELLED" {
			s += " cancelled"
		}
		if o.Transparent {
			s += " free"
		}
		if o.AllDay {
			s += " allday"
		}
		out = append(out, s)
	}
	return out
}

const berlinVTZ = "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nRRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE"

// webexVTZ defines a display-name TZID only through its VTIMEZONE.
const webexVTZ = "BEGIN:VTIMEZONE\r\nTZID:(UTC-08:00) Pacific Time (US & Canada)\r\nBEGIN:STANDARD\r\nDTSTART:20071104T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\nTZOFFSETFROM:-0700\r\nTZOFFSETTO:-0800\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:20070311T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\nTZOFFSETFROM:-0800\r\nTZOFFSETTO:-0700\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE"

// customVTZ is a zone only the file knows (+0300 / +0400 with DST in April
// and September), so the result proves the VTIMEZONE was used.
const customVTZ = "BEGIN:VTIMEZONE\r\nTZID:Customized Time Zone\r\nBEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nTZOFFSETFROM:+0400\r\nTZOFFSETTO:+0300\r\nRRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=9\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0300\r\nTZOFFSETTO:+0400\r\nRRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=4\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE"

func TestExpand(t *testing.T) {
	newYork, _ := time.LoadLocation("America/New_York")
	tests := []struct {
		name     string
		data     []byte
		from, to string
		zone     *time.Location
		want     []string
		warn     string // a substring of some warning
	}{
		{
			name: "single event with DTEND",
			data: vcal(ev("UID:a", "DTSTART:20240102T100000Z", "DTEND:20240102T110000Z")),
			from: "2024-01-01T00:00:00Z", to: "2024-01-03T00:00:00Z",
			want: []string{"2024-01-02T10:00Z/2024-01-02T11:00Z"},
		},
		{
			name: "zoom: extra TZID property in VEVENT, weekly in New York across DST",
			data: vcal(ev("UID:ZOOM83412345678", "TZID:America/New_York", "DTSTART;TZID=America/New_York:20240301T090000",
				"DTEND;TZID=America/New_York:20240301T093000", "RRULE:FREQ=WEEKLY;BYDAY=FR", "SUMMARY:Zoom standup", "LOCATION:https://zoom.us/j/834")),
			from: "2024-03-01T00:00:00Z", to: "2024-03-16T00:00:00Z",
			want: []string{"2024-03-01T14:00Z/2024-03-01T14:30Z", "2024-03-08T14:00Z/2024-03-08T14:30Z", "2024-03-15T13:00Z/2024-03-15T13:30Z"},
		},
		{
			name: "webex: display-name TZID defined only by VTIMEZONE",
			data: vcal(webexVTZ, ev("UID:webex-1", "DTSTART;TZID=\"(UTC-08:00) Pacific Time (US & Canada)\":20240307T090000",
				"DTEND;TZID=\"(UTC-08:00) Pacific Time (US & Canada)\":20240307T100000", "RRULE:FREQ=WEEKLY;COUNT=2")),
			from: "2024-03-01T00:00:00Z", to: "2024-04-01T00:00:00Z",
			want: []string{"2024-03-07T17:00Z/2024-03-07T18:00Z", "2024-03-14T16:00Z/2024-03-14T17:00Z"},
		},
		{
			name: "custom VTIMEZONE with 1601 rules",
			data: vcal(customVTZ, ev("UID:c", "DTSTART;TZID=Customized Time Zone:20240401T120000", "DURATION:PT1H", "RRULE:FREQ=WEEKLY;COUNT=2")),
			from: "2024-03-01T00:00:00Z", to: "2024-05-01T00:00:00Z",
			want: []string{"2024-04-01T09:00Z/2024-04-01T10:00Z", "2024-04-08T08:00Z/2024-04-08T09:00Z"},
		},
		{
			name: "outlook: Windows TZID, 1601 VTIMEZONE, CDO busy status FREE",
			data: vcal(berlinVTZ, ev("UID:040000008200E00074C5B7101A82E008", "DTSTART;TZID=W. Europe Standard Time:20240325T093000",
				"DTEND;TZID=W. Europe Standard Time:20240325T100000", "RRULE:FREQ=DAILY;COUNT=2", "X-MICROSOFT-CDO-BUSYSTATUS:FREE")),
			from: "2024-03-01T00:00:00Z", to: "2024-04-01T00:00:00Z",
			want: []string{"2024-03-25T08:30Z/2024-03-25T09:00Z free", "2024-03-26T08:30Z/2024-03-26T09:00Z free"},
		},
		{
			name: "google: X-WR-TIMEZONE, UTC recurrence stays UTC across DST, cancelled instance",
			data: vcal("X-WR-TIMEZONE:Europe/Berlin",
				ev("UID:g1@google.com", "DTSTART:20240329T080000Z", "DTEND:20240329T090000Z", "RRULE:FREQ=DAILY;COUNT=3", "STATUS:CONFIRMED"),
				ev("UID:g1@google.com", "RECURRENCE-ID:20240330T080000Z", "DTSTART:20240330T080000Z", "DTEND:20240330T090000Z", "STATUS:CANCELLED")),
			from: "2024-03-28T00:00:00Z", to: "2024-04-02T00:00:00Z",
			want: []string{"2024-03-29T08:00Z/2024-03-29T09:00Z", "2024-03-30T08:00Z/2024-03-30T09:00Z cancelled", "2024-03-31T08:00Z/2024-03-31T09:00Z"},
		},
		{
			name: "master CANCELLED cancels every instance",
			data: vcal(ev("UID:m", "DTSTART:20240101T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=2", "STATUS:CANCELLED"),
				ev("UID:m", "RECURRENCE-ID:20240102T100000Z", "DTSTART:20240102T120000Z", "DURATION:PT1H", "STATUS:CONFIRMED")),
			from: "2024-01-01T00:00:00Z", to: "2024-01-03T00:00:00Z",
			want: []string{"2024-01-01T10:00Z/2024-01-01T11:00Z cancelled", "2024-01-02T12:00Z/2024-01-02T13:00Z cancelled"},
		},
		{
			name: "METHOD:CANCEL cancels everything",
			data: feed("BEGIN:VCALENDAR", "METHOD:CANCEL", ev("UID:x", "DTSTART:20240101T100000Z", "DURATION:PT1H"), "END:VCALENDAR"),
			from: "2024-01-01T00:00:00Z", to: "2024-01-02T00:00:00Z",
			want: []string{"2024-01-01T10:00Z/2024-01-01T11:00Z cancelled"},
		},
		{
			name: "RANGE=THISANDFUTURE shifts later instances and applies the new length",
			data: vcal(ev("UID:r", "DTSTART:20240101T100000Z", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=4"),
				ev("UID:r", "RECURRENCE-ID;RANGE=THISANDFUTURE:20240102T100000Z", "DTSTART:20240102T140000Z", "DURATION:PT30M")),
			from: "2024-01-01T00:00:00Z", to: "2024-01-10T00:00:00Z",
			want: []string{"2024-01-01T10:00Z/2024-01-01T11:00Z", "2024-01-02T14:00Z/2024-01-02T14:30Z", "2024-01-03T14:00Z/2024-01-03T14:30Z", "2024-01-04T14:00Z/2024-01-04T14:30Z"},
		},
		{
			name: "EXDATE list in another zone than DTSTART",
			data: vcal(ev("UID:e", "DTSTART;TZID=Europe/Berlin:20240108T100000", "DURATION:PT1H", "RRULE:FREQ=DAILY;COUNT=4",
				"EXDATE;TZID=America/New_York:20240109T040000,20240110T040000")),
			from: "2024-01-01T00:00:00Z", to: "2024-01-20T00:00:00Z",
			want: []string{"2024-01-08T09:00Z/2024-01-08T10:00Z", "2024-01-11T09:00Z/2024-01-11T10:00Z"},
		},
		{
			name: "DATE EXDATE on a DATE series",
			data: vcal(ev("UID:d", "DTSTART;VALUE=DATE:20240101", "RRULE:FREQ=DAILY;COUNT=3", "EXDATE;VALUE=DATE:20240102")),
			from: "2024-01-01T00:00:00Z", to: "2024-01-10T00:00:00Z",
			want: []string{"2024-01-01T00:00Z/2024-01-02T00:00Z allday", "2024-01-03T00:00Z/2024-01-04T00:00Z allday"},
		},
		{
			name: "UNTIL as DATE with a DATE-TIME DTSTART includes that day",
			data: vcal(ev("UID:u", "DTSTART;TZID=America/New_York:20240101T180000", "DURATION:PT1H", "RRULE:FREQ=DAILY;UNTIL=20240103")),
			from: "2024-01-01T00:00:00Z", to: "2024-01-10T00:00:00Z",
			want: []string{"2024-01-01T23:00Z/2024-01-02T00:00Z", "2024-01-02T23:00Z/2024-01-03T00:00Z", "2024-01-03T23:00Z/2024-01-04T00:00Z"},
		},
		{
			name: "COUNT counts before EXDATE",
			data: vcal(ev("UID:c", "DTSTART:20240101T100000Z", "RRULE:FREQ=DAILY;COUNT=3", "EXDATE:20240102T100000Z")),
			from: "2024-01-01T00:00:00Z", to: "2024-01-10T00:00:00Z",
			want: []string{"2024-01-01T10:00Z/2024-01-01T10:00Z", "2024-01-03T10:00Z/2024-01-03T10:00Z"},
		},
		{
			name: "BYSETPOS: last weekday of the month",
			data: vcal(ev("UID:s", "DTSTART:20240131T150000Z", "DURATION:PT1H", "RRULE:FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;COUNT=3")),
			from: "2024-01-01T00:00:00Z", to: "2024-12-31T00:00:00Z",
			want: []string{"2024-01-31T15:00Z/2024-01-31T16:00Z", "2024-02-29T15:00Z/2024-02-29T16:00Z", "2024-03-29T15:00Z/2024-03-29T16:00Z"},
		},
		{
			// RFC 5545 3.3.10: WKST changes which days an INTERVAL=2 week holds.
			name: "WKST=SU with INTERVAL=2",
			data: vcal(ev("UID:w", "DTSTART:19970805T090000Z", "RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU")),
			from: "1997-08-01T00:00:00Z", to: "1997-09-30T00:00:00Z",
			want: []string{"1997-08-05T09:00Z/1997-08-05T09:00Z", "1997-08-17T09:00Z/1997-08-17T09:00Z", "1997-08-19T09:00Z/1997-08-19T09:00Z", "1997-08-31T09:00Z/1997-08-31T09:00Z"},
		},
		{
			name: "WKST=MO with INTERVAL=2",
			data: vcal(ev("UID:w", "DTSTART:19970805T090000Z", "RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO")),
			from: "1997-08-01T00:00:00Z", to: "1997-09-30T00:00:00Z",
			want: []string{"1997-08-05T09:00Z/1997-08-05T09:00Z", "1997-08-10T09:00Z/1997-08-10T09:00Z", "1997-08-19T09:00Z/1997-08-19T09:00Z", "1997-08-24T09:00Z/1997-08-24T09:00Z"},
		},
		{
			name: "DST gap: a skipped local time moves forward by the gap",
			data: vcal(ev("UID:gap", "DTSTART;TZID=Europe/Berlin:20240330T023000", "DURATION:PT30M", "RRULE:FREQ=DAILY;COUNT=3")),
			from: "2024-03-29T00:00:00Z", to: "2024-04-02T00:00:00Z",
			want: []string{"2024-03-30T01:30Z/2024-03-30T02:00Z", "2024-03-31T01:30Z/2024-03-31T02:00Z", "2024-04-01T00:30Z/2024-04-01T01:00Z"},
		},
		{
			name: "DST gap west of UTC",
			data: vcal(ev("UID:gap", "DTSTART;TZID=America/New_York:20240310T023000", "DURATION:PT30M")),
			from: "2024-03-09T00:00:00Z", to: "2024-03-11T00:00:00Z",
			want: []string{"2024-03-10T07:30Z/2024-03-10T08:00Z"},
		},
		{
			name: "DST overlap: a repeated local time is its first occurrence",
			data: vcal(ev("UID:o", "DTSTART;TZID=Europe/Berlin:20241027T023000", "DURATION:PT30M"),
				ev("UID:p", "DTSTART;TZID=America/New_York:20241103T013000", "DURATION:PT30M")),
			from: "2024-10-26T00:00:00Z", to: "2024-11-04T00:00:00Z",
			want: []string{"2024-10-27T00:30Z/2024-10-27T01:00Z", "2024-11-03T05:30Z/2024-11-03T06:00Z"},
		},
		{
			name: "DURATION: days are nominal, hours exact",
			data: vcal(ev("UID:n", "DTSTART;TZID=Europe/Berlin:20240330T100000", "DURATION:P1D"),
				ev("UID:x", "DTSTART;TZID=Europe/Berlin:20240330T100000", "DURATION:PT24H")),
			from: "2024-03-29T00:00:00Z", to: "2024-04-02T00:00:00Z",
			want: []string{"2024-03-30T09:00Z/2024-03-31T08:00Z", "2024-03-30T09:00Z/2024-03-31T09:00Z"},
		},
		{
			name: "no DTEND: a DATE lasts a day, a DATE-TIME has no length",
			data: vcal(ev("UID:a", "DTSTART;VALUE=DATE:20240105"), ev("UID:b", "DTSTART:20240105T100000Z")),
			from: "2024-01-05T00:00:00Z", to: "2024-01-06T00:00:00Z",
			want: []string{"2024-01-05T00:00Z/2024-01-06T00:00Z allday", "2024-01-05T10:00Z/2024-01-05T10:00Z"},
		},
		{
			name: "all-day in X-WR-TIMEZONE",
			data: vcal("X-WR-TIMEZONE:America/New_York", ev("UID:a", "DTSTART;VALUE=DATE:20240105", "DTEND;VALUE=DATE:20240106")),
			from: "2024-01-05T00:00:00Z", to: "2024-01-07T00:00:00Z",
			want: []string{"2024-01-05T05:00Z/2024-01-06T05:00Z allday"},
		},
		{
			name: "floating time in the configured zone",
			data: vcal(ev("UID:f", "DTSTART:20240105T090000", "DTEND:20240105T100000")),
			zone: newYork,
			from: "2024-01-05T00:00:00Z", to: "2024-01-07T00:00:00Z",
			want: []string{"2024-01-05T14:00Z/2024-01-05T15:00Z"},
		},
		{
			name: "RDATE only: DTSTART is the first instance; DATE-TIME, PERIOD and lists",
			data: vcal(ev("UID:rd", "DTSTART:20240101T100000Z", "DURATION:PT1H",
				"RDATE:20240102T100000Z,20240103T100000Z", "RDATE;VALUE=PERIOD:20240104T120000Z/PT2H,20240105T120000Z/20240105T123000Z")),
			from: "2024-01-01T00:00:00Z", to: "2024-01-10T00:00:00Z",
			want: []string{"2024-01-01T10:00Z/2024-01-01T11:00Z", "2024-01-02T10:00Z/2024-01-02T11:00Z", "2024-01-03T10:00Z/2024-01-03T11:00Z",
				"2024-01-04T12:00Z/2024-01-04T14:00Z", "2024-01-05T12:00Z/2024-01-05T12:30Z"},
		},
		{
			name: "several RRULEs are merged",
			data: vcal(ev("UID:mr", "DTSTART:20240101T100000Z", "RRULE:FREQ=WEEKLY;COUNT=2", "RRULE:FREQ=MONTHLY;BYMONTHDAY=15;COUNT=1")),
			from: "2024-01-01T00:00:00Z", to: "2024-02-01T00:00:00Z",
			want: []string{"2024-01-01T10:00Z/2024-01-01T10:00Z", "2024-01-08T10:00Z/2024-01-08T10:00Z", "2024-01-15T10:00Z/2024-01-15T10:00Z"},
		},
		{
			name: "same UID without RECURRENCE-ID: highest SEQUENCE wins",
			data: vcal(ev("UID:s", "SEQUENCE:2", "DTSTART:20240101T120000Z"), ev("UID:s", "SEQUENCE:1", "DTSTART:20240101T100000Z")),
			from: "2024-01-01T00:00:00Z", to: "2024-01-02T00:00:00Z",
			want: []string{"2024-01-01T12:00Z/2024-01-01T12:00Z"},
			warn: "2 VEVENTs with this UID",
		},
		{
			name: "orphan override is kept; override of an EXDATE'd instance is dropped",
			data: vcal(ev("UID:o", "DTSTART:20240101T100000Z", "RRULE:FREQ=DAILY;COUNT=2", "EXDATE:20240102T100000Z"),
				ev("UID:o", "RECURRENCE-ID:20240102T100000Z", "DTSTART:20240102T150000Z"),
				ev("UID:o", "RECURRENCE-ID:20240105T100000Z", "DTSTART:20240105T150000Z"),
				ev("UID:lonely", "RECURRENCE-ID:20240106T100000Z", "DTSTART:20240106T100000Z")),
			from: "2024-01-01T00:00:00Z", to: "2024-01-10T00:00:00Z",
			want: []string{"2024-01-01T10:00Z/2024-01-01T10:00Z", "2024-01-05T15:00Z/2024-01-05T15:00Z", "2024-01-06T10:00Z/2024-01-06T10:00Z"},
		},
		{
			name: "unknown TZID falls back to the configured zone with a warning",
			data: vcal(ev("UID:abc", "DTSTART;TZID=Foo:20240105T090000")),
			zone: newYork,
			from: "2024-01-05T00:00:00Z", to: "2024-01-07T00:00:00Z",
			want: []string{"2024-01-05T14:00Z/2024-01-05T14:00Z"},
			warn: `line 6: UID "abc": unknown TZID "Foo", using America/New_York`,
		},
		{
			name: "mozilla-prefixed and Windows TZIDs",
			data: vcal(ev("UID:a", "DTSTART;TZID=/mozilla.org/20050126_1/Europe/Berlin:20240105T090000"),
				ev("UID:b", "DTSTART;TZID=\"Eastern Standard Time\":20240105T090000")),
			from: "2024-01-05T00:00:00Z", to: "2024-01-07T00:00:00Z",
			want: []string{"2024-01-05T08:00Z/2024-01-05T08:00Z", "2024-01-05T14:00Z/2024-01-05T14:00Z"},
		},
		{
			name: "window: zero-length events count when they start inside it",
			data: vcal(ev("UID:a", "DTSTART:20240105T000000Z"), ev("UID:b", "DTSTART:20240106T000000Z"),
				ev("UID:c", "DTSTART:20240104T230000Z", "DTEND:20240105T000000Z")),
			from: "2024-01-05T00:00:00Z", to: "2024-01-06T00:00:00Z",
			want: []string{"2024-01-05T00:00Z/2024-01-05T00:00Z"},
		},
		{
			name: "unbounded rule from long ago",
			data: vcal(ev("UID:old", "DTSTART;TZID=Europe/Berlin:19700105T090000", "DURATION:PT1H", "RRULE:FREQ=WEEKLY")),
			from: "2030-01-01T00:00:00Z", to: "2030-01-10T00:00:00Z",
			want: []string{"2030-01-07T08:00Z/2030-01-07T09:00Z"},
		},
		{
			name: "UNTIL before DTSTART: a deleted series",
			data: vcal(ev("UID:del", "DTSTART:20240105T100000Z", "RRULE:FREQ=DAILY;UNTIL=20240101T000000Z")),
			from: "2024-01-01T00:00:00Z", to: "2024-02-01T00:00:00Z",
			want: nil,
			warn: "UNTIL before DTSTART",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := ParseExpand(tt.data, ExpandOptions{From: utc(tt.from), To: utc(tt.to), Zone: tt.zone})
			if err != nil {
				t.Fatalf("Expand(%q) error: %v", tt.name, err)
			}
			if diff := cmp.Diff(tt.want, brief(res)); diff != "" {
				t.Errorf("Expand(%q) = %v; want %v (-want +got)\n%s\nwarnings: %q", tt.name, brief(res), tt.want, diff, res.Warnings)
			}
			if tt.warn != "" && !strings.Contains(strings.Join(res.Warnings, "\n"), tt.warn) {
				t.Errorf("Expand(%q) warnings = %q; want one containing %q", tt.name, res.Warnings, tt.warn)
			}
			checkSane(t, res)
		})
	}
}

func TestExpandFields(t *testing.T) {
	data := vcal("METHOD:request",
		ev("UID:f1", "DTSTART:20240101T100000Z", "DTEND:20240101T110000Z", "RRULE:FREQ=DAILY;COUNT=2",
			`SUMMARY:Sync\, weekly`, "LOCATION:Room 1", `DESCRIPTION:line one\nline two \\ \;`,
			"STATUS:confirmed", "TRANSP:TRANSPARENT", "ORGANIZER;CN=Boss:MAILTO:Boss@Example.COM",
			"ATTENDEE;PARTSTAT=accepted;CN=\"Doe, Jane\":mailto:Jane@Example.com", "ATTENDEE:mailto:bob@example.com"),
		ev("UID:f1", "RECURRENCE-ID:20240102T100000Z", "DTSTART:20240102T120000Z", "DTEND:20240102T130000Z", "STATUS:TENTATIVE", "SUMMARY:Moved"))
	res, err := ParseExpand(data, ExpandOptions{From: utc("2024-01-01T00:00:00Z"), To: utc("2024-01-03T00:00:00Z")})
	if err != nil {
		t.Fatal(err)
	}
	attendees := []Attendee{{Email: "jane@example.com", PartStat: "ACCEPTED"}, {Email: "bob@example.com"}}
	want := []Occurrence{
		{UID: "f1", RecurrenceID: utc("2024-01-01T10:00:00Z"), Summary: "Sync, weekly", Location: "Room 1", Description: "line one\nline two \\ ;",
			Start: utc("2024-01-01T10:00:00Z"), End: utc("2024-01-01T11:00:00Z"), Status: "CONFIRMED", Transparent: true,
			Organizer: "boss@example.com", Attendees: attendees},
		{UID: "f1", RecurrenceID: utc("2024-01-02T10:00:00Z"), Summary: "Moved", Location: "Room 1", Description: "line one\nline two \\ ;",
			Start: utc("2024-01-02T12:00:00Z"), End: utc("2024-01-02T13:00:00Z"), Status: "TENTATIVE", Transparent: true,
			Organizer: "boss@example.com", Attendees: attendees},
	}
	if diff := cmp.Diff(want, res.Occurrences); diff != "" {
		t.Errorf("Expand(fields) mismatch (-want +got):\n%s", diff)
	}
	if res.Method != "REQUEST" || res.Events != 2 {
		t.Errorf("Expand(fields) Method, Events = %q, %d; want REQUEST, 2", res.Method, res.Events)
	}
	for _, o := range res.Occurrences {
		if o.Key() != (Key{"f1", o.RecurrenceID}) {
			t.Errorf("Key() = %v", o.Key())
		}
	}
}

// TestParseInput covers the byte-level shapes of real feeds: line endings,
// BOM, folding, long lines, broken UTF-8, and the repairs of real clients.
func TestParseInput(t *testing.T) {
	base := ev("UID:a", "DTSTART:20240101T100000Z", "DURATION:PT1H", "SUMMARY:Hello")
	crlf := vcal(base)
	long := strings.Repeat("x", 200000)
	tests := []struct {
		name        string
		data        []byte
		wantSummary string
		wantStarts  int
		warn        string
	}{
		{"CRLF", crlf, "Hello", 1, ""},
		{"LF only", bytes.ReplaceAll(crlf, []byte("\r\n"), []byte("\n")), "Hello", 1, ""},
		{"lone CR", bytes.ReplaceAll(crlf, []byte("\r\n"), []byte("\r")), "Hello", 1, ""},
		{"a lone CR in a CRLF feed", vcal(ev("UID:a", "DTSTART:20240101T100000Z", "SUMMARY:Hello\rWorld")), "Hello\nWorld", 1, "joined"},
		{"a lone CR at the end", append(bytes.TrimSuffix(crlf, []byte("\n")), "X-END:\r"...), "Hello", 1, "outside VCALENDAR"},
		{"BOM", append([]byte("\xef\xbb\xbf"), crlf...), "Hello", 1, ""},
		{"folding with space and tab", vcal(ev("UID:a", "DTSTART:20240101T1000", " 00Z", "SUMMARY:Hel", "\tlo")), "Hello", 1, ""},
		{"very long line", vcal(ev("UID:a", "DTSTART:20240101T100000Z", "SUMMARY:"+long)), long, 1, ""},
		{"invalid UTF-8", vcal(ev("UID:a", "DTSTART:20240101T100000Z", "SUMMARY:caf\xe9")), "caf\uFFFD", 1, "invalid UTF-8"},
		{"no VCALENDAR wrapper", feed(base), "Hello", 1, "wrapped"},
		{"unfolded DESCRIPTION continuation", vcal(ev("UID:a", "DTSTART:20240101T100000Z", "SUMMARY:Hello", "DESCRIPTION:Join Zoom Meeting", "", "Meeting ID: 123 456")), "Hello", 1, "joined"},
		{"quote around TZID and value", vcal(ev("UID:a", `DTSTART;TZID="W. Europe Standard Time:20240101T110000"`, "SUMMARY:Hello")), "Hello", 1, "quote"},
		{"BYDAY with spaces", vcal(ev("UID:a", "DTSTART:20240101T100000Z", "RRULE:FREQ=WEEKLY;COUNT=3;BYDAY=MO, TU", "SUMMARY:Hello")), "Hello", 2, ""},
		{"DATE without VALUE=DATE", vcal(ev("UID:a", "DTSTART:20240101", "SUMMARY:Hello")), "Hello", 1, ""},
		{"DTEND before DTSTART", vcal(ev("UID:a", "DTSTART:20240101T110000Z", "DTEND:20240101T100000Z", "SUMMARY:Hello")), "Hello", 1, "swapped"},
		{"COUNT=-1", vcal(ev("UID:a", "DTSTART:20240101T100000Z", "RRULE:FREQ=DAILY;COUNT=-1;UNTIL=20240102T100000Z", "SUMMARY:Hello")), "Hello", 2, ""},
		{"empty RRULE", vcal(ev("UID:a", "DTSTART:20240101T100000Z", "RRULE:", "SUMMARY:Hello")), "Hello", 1, "empty RRULE"},
		{"lower-case names", feed("begin:vcalendar", "begin:vevent", "uid:a", "dtstart:20240101T100000Z", "summary:Hello", "end:vevent", "end:vcalendar"), "Hello", 1, ""},
		{"zero VEVENTs", vcal(), "", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := ParseExpand(tt.data, ExpandOptions{From: utc("2024-01-01T00:00:00Z"), To: utc("2024-01-08T00:00:00Z")})
			if err != nil {
				t.Fatalf("Expand(%q) error: %v", tt.name, err)
			}
			if len(res.Occurrences) != tt.wantStarts {
				t.Fatalf("Expand(%q) = %v; want %d occurrences (warnings %q)", tt.name, brief(res), tt.wantStarts, res.Warnings)
			}
			if tt.wantStarts > 0 && res.Occurrences[0].Summary != tt.wantSummary {
				t.Errorf("Expand(%q) summary = %.40q; want %.40q", tt.name, res.Occurrences[0].Summary, tt.wantSummary)
			}
			if tt.warn != "" && !strings.Contains(strings.Join(res.Warnings, "\n"), tt.warn) {
				t.Errorf("Expand(%q) warnings = %q; want one containing %q", tt.name, res.Warnings, tt.warn)
			}
		})
	}
}

// TestWarningsInOrder: the scanner's warnings about one line come in the
// order it found them, the same every time.
func TestWarningsInOrder(t *testing.T) {
	want := []string{
		"line 1: invalid UTF-8 replaced",
		"line 1: component outside VCALENDAR wrapped in one",
		"line 2: END:VCALENDAR closes BEGIN:1\uFFFD of line 1",
	}
	for range 20 {
		res, err := ParseExpand([]byte("BEGIN:1\x8a\nEND:VCALENDAR"), ExpandOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, res.Warnings); diff != "" {
			t.Fatalf("ParseExpand warnings mismatch (-want +got):\n%s", diff)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "line 1: not an iCalendar feed"},
		{"HTML", []byte("<html>\n<body>Sign in</body>\n</html>\n"), "line 1: not an iCalendar feed"},
		{"truncated", feed("BEGIN:VCALENDAR", "VERSION:2.0", "BEGIN:VEVENT", "DTSTART:20240101T100000Z"), "line 4: truncated feed"},
		{"truncated after an event", feed("BEGIN:VCALENDAR", "BEGIN:VEVENT", "DTSTART:20240101T100000Z", "END:VEVENT"), "truncated feed"},
		{"property before BEGIN", feed("VERSION:2.0", "BEGIN:VCALENDAR", "END:VCALENDAR"), "line 1: not an iCalendar feed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseExpand(tt.data, ExpandOptions{To: utc("2030-01-01T00:00:00Z")})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Expand(%q) error = %v; want %q", tt.name, err, tt.want)
			}
		})
	}
}

// TestExpandBounded: rules that would run for ever or flood the result
// stop, with a warning.
func TestExpandBounded(t *testing.T) {
	tests := []struct {
		name string
		rule string
		max  int
		want int
		warn string
	}{
		{"SECONDLY is capped", "FREQ=SECONDLY", 100, 100, "more than 100 occurrences"},
		{"MINUTELY from 1970 with a huge COUNT", "FREQ=MINUTELY;COUNT=2000000000", 50, 50, "occurrences"},
		{"HOURLY that never reaches its BYHOUR", "FREQ=HOURLY;INTERVAL=2;BYHOUR=1", 0, 1, "matches no date"},
		{"MINUTELY that never reaches its BYMINUTE", "FREQ=MINUTELY;INTERVAL=2;BYMINUTE=1", 0, 1, "matches no date"},
		{"a date that never exists", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", 0, 1, ""},
		{"DAILY that never matches", "FREQ=DAILY;BYMONTH=2;BYMONTHDAY=31", 0, 1, ""},
		{"BYSETPOS beyond the set", "FREQ=WEEKLY;BYDAY=MO;BYSETPOS=3", 0, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := vcal(ev("UID:b", "DTSTART:19700101T000000Z", "RRULE:"+tt.rule))
			start := time.Now()
			res, err := ParseExpand(data, ExpandOptions{From: utc("1970-01-01T00:00:00Z"), To: utc("2040-01-01T00:00:00Z"), MaxPerEvent: tt.max})
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Expand(%q) took %v", tt.rule, d)
			}
			if len(res.Occurrences) != tt.want {
				t.Errorf("Expand(%q) = %d occurrences; want %d", tt.rule, len(res.Occurrences), tt.want)
			}
			if tt.warn != "" && !strings.Contains(strings.Join(res.Warnings, "\n"), tt.warn) {
				t.Errorf("Expand(%q) warnings = %q; want one containing %q", tt.rule, res.Warnings, tt.warn)
			}
		})
	}
}

func TestLocalToUTC(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	sydney, _ := time.LoadLocation("Australia/Sydney")
	tests := []struct {
		loc  *time.Location
		wall string
		want string
	}{
		{berlin, "2024-03-31T02:30:00Z", "2024-03-31T01:30:00Z"}, // gap: offset before it
		{berlin, "2024-10-27T02:30:00Z", "2024-10-27T00:30:00Z"}, // overlap: first
		{berlin, "2024-07-01T12:00:00Z", "2024-07-01T10:00:00Z"},
		{sydney, "2024-04-07T02:30:00Z", "2024-04-06T15:30:00Z"}, // overlap (AEDT first)
		{sydney, "2024-10-06T02:30:00Z", "2024-10-05T16:30:00Z"}, // gap
	}
	for _, tt := range tests {
		if got := localToUTC(tt.loc, utc(tt.wall)); !got.Equal(utc(tt.want)) {
			t.Errorf("localToUTC(%s, %s) = %v; want %s", tt.loc, tt.wall, got, tt.want)
		}
	}
}

func TestResolveZone(t *testing.T) {
	tests := []struct{ tzid, want string }{
		{"Europe/Berlin", "Europe/Berlin"},
		{`"Europe/Berlin"`, "Europe/Berlin"},
		{"/mozilla.org/20050126_1/Europe/Berlin", "Europe/Berlin"},
		{"/freeassociation.sourceforge.net/Tzfile/America/New_York", "America/New_York"},
		{"W. Europe Standard Time", "Europe/Berlin"},
		{"pacific standard time", "America/Los_Angeles"},
		{"US/Pacific", "US/Pacific"},
		{"Local", ""},
		{"Foo", ""},
	}
	for _, tt := range tests {
		got := ""
		if loc := resolveNamedZone(tt.tzid); loc != nil {
			got = loc.String()
		}
		if got != tt.want {
			t.Errorf("resolveNamedZone(%q) = %q; want %q", tt.tzid, got, tt.want)
		}
	}
}

func TestUnfoldedDescription(t *testing.T) {
	data := vcal(ev("UID:a", "DTSTART:20240101T100000Z", "DESCRIPTION:Join Zoom Meeting", "", "Meeting ID: 123 456", "Passcode 42", "SUMMARY:Hi"))
	res, err := ParseExpand(data, ExpandOptions{From: utc("2024-01-01T00:00:00Z"), To: utc("2024-01-02T00:00:00Z")})
	if err != nil || len(res.Occurrences) != 1 {
		t.Fatalf("Expand(unfolded) = %v, %v", res, err)
	}
	if got, want := res.Occurrences[0].Description, "Join Zoom Meeting\nMeeting ID: 123 456\nPasscode 42"; got != want {
		t.Errorf("Expand(unfolded) description = %q; want %q", got, want)
	}
	if got := res.Occurrences[0].Summary; got != "Hi" {
		t.Errorf("Expand(unfolded) summary = %q; want %q", got, "Hi")
	}
}

func TestUnescapeText(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{`a\,b\;c\\d\ne\Nf`, "a,b;c\\d\ne\nf"},
		{`\n`, "\n"},
		{`end\`, `end\`},
		{`\\`, `\`},
		{`\\\`, `\\`},
		{`\x`, "x"},
		{`Hi there\,\n\nJoin: https://example.zoom.us/j/1`, "Hi there,\n\nJoin: https://example.zoom.us/j/1"},
	} {
		if got := unescapeText(tt.in); got != tt.want {
			t.Errorf("unescapeText(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestCalAddress(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"mailto:Bob@Example.com", "bob@example.com"},
		{" MAILTO:bob@example.com ", "bob@example.com"},
		{"MailTo:a@b.c", "a@b.c"},
		{"mailto:mailto:x@y.z", "x@y.z"},
		{"mailto:b o b@example.com", "bob@example.com"},
		{"bob@example.com", "bob@example.com"},
		{"mailt", "mailt"},
		{"ṁailto:x@y", "ṁailto:x@y"},
	} {
		if got := calAddress(tt.in); got != tt.want {
			t.Errorf("calAddress(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}
