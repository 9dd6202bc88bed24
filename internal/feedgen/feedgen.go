// Package feedgen generates the calendar feeds the load tool serves and
// the benchmarks parse: deterministic, in the styles of the big publishers.
package feedgen

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// The generated feeds imitate what the four big publishers send (about
// 1.75 KB per meeting): Zoom (an IANA TZID with its
// VTIMEZONE, a stray TZID property, long folded descriptions, an alarm),
// Webex (a display-name TZID defined only by its VTIMEZONE), Outlook (a
// Windows zone name, overrides, EXDATEs, X-MICROSOFT-CDO-BUSYSTATUS and an
// HTML X-ALT-DESC) and Google (UTC times, X-WR-TIMEZONE, Meet descriptions,
// UNTIL). About a third of the meetings recur daily on weekdays, a third
// weekly, the rest are single; all sit around now, so that the 36 h horizon
// holds a realistic share of them.

// style is one publisher's way of writing a feed.
type style int

const (
	styleZoom style = iota
	styleWebex
	styleOutlook
	styleGoogle
	numStyles
)

func (s style) String() string {
	return [...]string{"zoom", "webex", "outlook", "google"}[s]
}

// Generator writes feed i of a deterministic set. It holds no feed: each
// body is generated again for each request, so the server's memory does
// not count against the worker's.
type Generator struct {
	Seed     uint64
	Meetings int // meetings (VEVENTs, with some overrides) around Base
	// History is the number of past meetings a feed carries besides, as
	// published calendars keep every meeting there was: single VEVENTs
	// on the working days before Base, three a day, going back.
	History int
	Base    time.Time // midnight UTC of the day the run started
	Style   string    // "mixed" or one style's name
}

func (g *Generator) styleOf(i int) style {
	switch g.Style {
	case "zoom":
		return styleZoom
	case "webex":
		return styleWebex
	case "outlook":
		return styleOutlook
	case "google":
		return styleGoogle
	}
	return style(i % int(numStyles))
}

// ETag is the validator of feed i, known without generating it.
func (g *Generator) ETag(i int) string {
	return `"` + strconv.FormatUint(g.Seed, 36) + "-" + strconv.Itoa(i) + "-" + strconv.FormatInt(g.Base.Unix(), 36) + `"`
}

type feedWriter struct {
	b []byte
}

func (w *feedWriter) line(parts ...string) {
	for _, p := range parts {
		w.b = append(w.b, p...)
	}
	w.b = append(w.b, '\r', '\n')
}

// folded writes a content line folded at 75 octets (RFC 5545 §3.1).
func (w *feedWriter) folded(s string) {
	for len(s) > 75 {
		w.b = append(w.b, s[:75]...)
		w.b = append(w.b, '\r', '\n', ' ')
		s = s[75:]
	}
	w.line(s)
}

func (w *feedWriter) stamp(prop string, params string, t time.Time, utc bool) {
	w.b = append(w.b, prop...)
	w.b = append(w.b, params...)
	w.b = append(w.b, ':')
	if utc {
		w.b = t.UTC().AppendFormat(w.b, "20060102T150405Z")
	} else {
		w.b = t.AppendFormat(w.b, "20060102T150405")
	}
	w.b = append(w.b, '\r', '\n')
}

const (
	zoomDesc    = `Hi there\,\n\nAlice Example is inviting you to a scheduled Zoom meeting.\n\nJoin Zoom Meeting\nhttps://example.zoom.us/j/83412345678?pwd=bXlQbmRyT2hJZ0FzWjZkNkV4R0xoQT09\n\nMeeting ID: 834 1234 5678\nPasscode: 123456\n\n---\n\nOne tap mobile\n+16465588656\,\,83412345678#\,\,\,\,*123456# US (New York)\n+13017158592\,\,83412345678#\,\,\,\,*123456# US (Washington DC)\n\n---\n\nDial by your location\n• +1 646 558 8656 US (New York)\n• +1 301 715 8592 US (Washington DC)\n• +1 312 626 6799 US (Chicago)\n\nMeeting ID: 834 1234 5678\nPasscode: 123456\n\nFind your local number: https://example.zoom.us/u/kdPq6rT0Z\n\n---\n\nJoin by SIP\n• 83412345678@zoomcrc.com\n\nJoin by H.323\n• 162.255.37.11 (US West)\n• 162.255.36.11 (US East)\n\nMeeting ID: 834 1234 5678\nPasscode: 123456\n\n`
	webexDesc   = `Join the Webex meeting\n\nMeeting number (access code): 2634 112 9876\nMeeting password: pQ3mX7rT\n\nJoin from a video system or application\nDial 26341129876@example.webex.com\nYou can also dial 173.243.2.68 and enter your meeting number.\n\nJoin by phone\n+1-415-655-0001 US Toll\n+1-408-418-9388 United States Toll\nAccess code: 2634 112 9876\n\nGlobal call-in numbers: https://example.webex.com/example/globalcallin.php?MTID=m8f2b6a9c0d1e2f3a4b5c6d7e8f9a0b1c\n\nCan't join the meeting? https://help.webex.com/docs/DOC-5412\n\nIMPORTANT NOTICE: Please note that this Webex service allows audio and other information sent during the session to be recorded\, which may be discoverable in a legal matter.\n\n`
	googleDesc  = `-::~:~::~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~::~:~::-\nJoin with Google Meet: https://meet.google.com/abc-defg-hij\nOr dial: (US) +1 318-555-0142 PIN: 123456789#\nMore phone numbers: https://tel.meet/abc-defg-hij?pin=1234567890123\n\nLearn more about Meet at: https://support.google.com/a/users/answer/9282720\n\nPlease do not edit this section.\n-::~:~::~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~:~::~:~::-\n\nAgenda: review the quarter\, plan the next one.\n\n`
	outlookDesc = `________________________________________________________________________________\nMicrosoft Teams meeting\nJoin on your computer\, mobile app or room device\nClick here to join the meeting<https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjA2ZjM1YzAtYzQ3Ni00@thread.v2/0>\nMeeting ID: 231 456 789 012\nPasscode: Xy7kQp\nDownload Teams | Join on the web\nLearn More | Meeting options\n________________________________________________________________________________\n`
	outlookAlt  = `<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"></head><body><p>Hello team\,</p><p>Quarterly review\, see the agenda attached.</p><div><a href="https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjA2ZjM1YzAtYzQ3Ni00@thread.v2/0">Click here to join the meeting</a></div></body></html>`
)

const vtzNewYork = "BEGIN:VTIMEZONE\r\nTZID:America/New_York\r\nLAST-MODIFIED:20201011T015911Z\r\nTZURL:http://tzurl.org/zoneinfo-outlook/America/New_York\r\nX-LIC-LOCATION:America/New_York\r\nBEGIN:DAYLIGHT\r\nTZNAME:EDT\r\nTZOFFSETFROM:-0500\r\nTZOFFSETTO:-0400\r\nDTSTART:19700308T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\nTZNAME:EST\r\nTZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\nDTSTART:19701101T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"

const vtzWebex = "BEGIN:VTIMEZONE\r\nTZID:(UTC-08:00) Pacific Time (US & Canada)\r\nBEGIN:STANDARD\r\nDTSTART:20071104T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\nTZOFFSETFROM:-0700\r\nTZOFFSETTO:-0800\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:20070311T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\nTZOFFSETFROM:-0800\r\nTZOFFSETTO:-0700\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"

const vtzWEurope = "BEGIN:VTIMEZONE\r\nTZID:W. Europe Standard Time\r\nBEGIN:STANDARD\r\nDTSTART:16010101T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nRRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\nBEGIN:DAYLIGHT\r\nDTSTART:16010101T020000\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nRRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n"

const vtzLondon = "BEGIN:VTIMEZONE\r\nTZID:Europe/London\r\nX-LIC-LOCATION:Europe/London\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0000\r\nTZOFFSETTO:+0100\r\nTZNAME:BST\r\nDTSTART:19700329T010000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0000\r\nTZNAME:GMT\r\nDTSTART:19701025T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"

var weekdays = [...]string{"SU", "MO", "TU", "WE", "TH", "FR", "SA"}

// meeting is one generated VEVENT's timing.
type meeting struct {
	start  time.Time // wall clock in the feed's zone (as a UTC time.Time)
	dur    time.Duration
	rrule  string
	exdate time.Time // an excluded instance (zero: none)
	moved  time.Time // an instance moved by an override (zero: none)
}

func (g *Generator) meeting(r *rand.Rand) meeting {
	hour := 7 + r.IntN(11)
	minute := [...]int{0, 0, 0, 30, 15, 45}[r.IntN(6)]
	m := meeting{dur: [...]time.Duration{30 * time.Minute, 30 * time.Minute, 45 * time.Minute, time.Hour, 90 * time.Minute, 15 * time.Minute}[r.IntN(6)]}
	clock := time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute
	switch k := r.IntN(10); {
	case k < 3: // daily on weekdays, started weeks ago
		d := g.Base.AddDate(0, 0, -7*(1+r.IntN(8))-r.IntN(7))
		for d.Weekday() == time.Saturday || d.Weekday() == time.Sunday {
			d = d.AddDate(0, 0, 1)
		}
		m.start = d.Add(clock)
		m.rrule = "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR"
		if r.IntN(3) == 0 {
			m.rrule = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;INTERVAL=1"
		}
	case k < 7: // weekly
		d := g.Base.AddDate(0, 0, -7*(1+r.IntN(20))+r.IntN(7)-3)
		m.start = d.Add(clock)
		m.rrule = "FREQ=WEEKLY;BYDAY=" + weekdays[d.Weekday()]
		switch r.IntN(4) {
		case 0:
			m.rrule += ";COUNT=" + strconv.Itoa(10+r.IntN(40))
		case 1:
			m.rrule = "FREQ=WEEKLY;INTERVAL=2;BYDAY=" + weekdays[d.Weekday()]
		}
	default: // single, within a week of now
		m.start = g.Base.AddDate(0, 0, r.IntN(8)-3).Add(clock)
	}
	if m.rrule != "" && r.IntN(4) == 0 {
		// An instance in the last few weeks: either dropped or moved.
		wk := time.Duration(7*24) * time.Hour
		inst := m.start.Add(wk * time.Duration((g.Base.Sub(m.start)/wk)+time.Duration(r.IntN(2))))
		if r.IntN(2) == 0 {
			m.exdate = inst
		} else {
			m.moved = inst
		}
	}
	return m
}

// Feed returns the body of feed i, appended to buf.
func (g *Generator) Feed(buf []byte, i int) []byte {
	r := rand.New(rand.NewPCG(g.Seed, uint64(i)))
	w := &feedWriter{b: buf}
	st := g.styleOf(i)
	w.line("BEGIN:VCALENDAR")
	switch st {
	case styleZoom:
		w.line("PRODID:-//zoom.us//iCalendar Event//EN")
		w.line("VERSION:2.0")
		w.line("CALSCALE:GREGORIAN")
		w.line("METHOD:PUBLISH")
		w.b = append(w.b, vtzNewYork...)
	case styleWebex:
		w.line("PRODID:-//Cisco Webex//Webex Meetings//EN")
		w.line("VERSION:2.0")
		w.line("METHOD:PUBLISH")
		w.b = append(w.b, vtzWebex...)
	case styleOutlook:
		w.line("METHOD:PUBLISH")
		w.line("PRODID:Microsoft Exchange Server 2010")
		w.line("VERSION:2.0")
		w.line("X-WR-CALNAME:Calendar")
		w.b = append(w.b, vtzWEurope...)
	case styleGoogle:
		w.line("PRODID:-//Google Inc//Google Calendar 70.9054//EN")
		w.line("VERSION:2.0")
		w.line("CALSCALE:GREGORIAN")
		w.line("METHOD:PUBLISH")
		w.line("X-WR-CALNAME:user", strconv.Itoa(i), "@contoso.com")
		w.line("X-WR-TIMEZONE:Europe/London")
		w.b = append(w.b, vtzLondon...)
	}
	for j := range g.Meetings {
		g.event(w, st, strconv.Itoa(i)+"-"+strconv.Itoa(j), j, g.meeting(r), r)
	}
	// After the meetings, so that they are the same with or without.
	for k := range g.History {
		g.event(w, st, strconv.Itoa(i)+"-h"+strconv.Itoa(k), k, g.pastMeeting(r, k), r)
	}
	w.line("END:VCALENDAR")
	return w.b
}

func (g *Generator) event(w *feedWriter, st style, uid string, j int, m meeting, r *rand.Rand) {
	switch st {
	case styleZoom:
		g.zoomEvent(w, uid, j, m, r)
	case styleWebex:
		g.webexEvent(w, uid, j, m, r)
	case styleOutlook:
		g.outlookEvent(w, uid, j, m, r)
	case styleGoogle:
		g.googleEvent(w, uid, j, m, r)
	}
}

// pastMeeting is the timing of past meeting k: a single meeting on the
// (k/3+1)-th working day before Base, between 8:00 and 17:45.
func (g *Generator) pastMeeting(r *rand.Rand, k int) meeting {
	n := k/3 + 1
	d := g.Base.AddDate(0, 0, -7*(n/5))
	for left := n % 5; left > 0; {
		d = d.AddDate(0, 0, -1)
		if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday {
			left--
		}
	}
	hour := 8 + r.IntN(10)
	minute := [...]int{0, 0, 0, 30, 15, 45}[r.IntN(6)]
	return meeting{
		start: d.Add(time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute),
		dur:   [...]time.Duration{30 * time.Minute, 30 * time.Minute, 45 * time.Minute, time.Hour, 90 * time.Minute, 15 * time.Minute}[r.IntN(6)],
	}
}

var attendeeNames = [...]string{"bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory"}
var partstats = [...]string{"ACCEPTED", "ACCEPTED", "NEEDS-ACTION", "TENTATIVE", "DECLINED"}

func attendees(w *feedWriter, r *rand.Rand, n int, google bool) {
	for k := range n {
		name := attendeeNames[(r.IntN(len(attendeeNames))+k)%len(attendeeNames)]
		ps := partstats[r.IntN(len(partstats))]
		if google {
			w.folded("ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=" + ps + ";RSVP=TRUE;CN=" + name + "@partner.example;X-NUM-GUESTS=0:mailto:" + name + "@partner.example")
		} else {
			w.folded("ATTENDEE;CN=\"" + name + " Example\";ROLE=REQ-PARTICIPANT;PARTSTAT=" + ps + ";RSVP=TRUE:mailto:" + name + "@partner.example")
		}
	}
}

func (g *Generator) zoomEvent(w *feedWriter, uid string, j int, m meeting, r *rand.Rand) {
	const tz = ";TZID=America/New_York"
	w.line("BEGIN:VEVENT")
	w.stamp("DTSTAMP", "", g.Base, true)
	w.line("UID:ZOOM8341", uid)
	w.line("TZID:America/New_York")
	w.line("SUMMARY:Project sync ", strconv.Itoa(j))
	w.stamp("DTSTART", tz, m.start, false)
	w.stamp("DTEND", tz, m.start.Add(m.dur), false)
	if m.rrule != "" {
		w.line("RRULE:", m.rrule)
	}
	if !m.exdate.IsZero() {
		w.stamp("EXDATE", tz, m.exdate, false)
	}
	w.line("LOCATION:https://example.zoom.us/j/8341", uid, "?pwd=bXlQbmRyT2hJZ0FzWjZkNkV4R0xoQT09")
	w.folded("DESCRIPTION:" + zoomDesc)
	w.line("ORGANIZER;CN=Alice Example:mailto:alice@example.com")
	attendees(w, r, 4, false)
	w.line("BEGIN:VALARM")
	w.line("TRIGGER:-PT10M")
	w.line("ACTION:DISPLAY")
	w.line("DESCRIPTION:Reminder")
	w.line("END:VALARM")
	w.line("END:VEVENT")
	if !m.moved.IsZero() {
		w.line("BEGIN:VEVENT")
		w.stamp("DTSTAMP", "", g.Base, true)
		w.line("UID:ZOOM8341", uid)
		w.stamp("RECURRENCE-ID", tz, m.moved, false)
		w.line("SUMMARY:Project sync ", strconv.Itoa(j), " (moved)")
		w.stamp("DTSTART", tz, m.moved.Add(time.Hour), false)
		w.stamp("DTEND", tz, m.moved.Add(time.Hour+m.dur), false)
		w.line("END:VEVENT")
	}
}

func (g *Generator) webexEvent(w *feedWriter, uid string, j int, m meeting, r *rand.Rand) {
	const tz = `;TZID="(UTC-08:00) Pacific Time (US & Canada)"`
	w.line("BEGIN:VEVENT")
	w.line("UID:", uid, "-webex@example.webex.com")
	w.line("SEQUENCE:", strconv.Itoa(r.IntN(3)))
	w.stamp("DTSTAMP", "", g.Base, true)
	w.line("SUMMARY:Design review ", strconv.Itoa(j))
	w.stamp("DTSTART", tz, m.start, false)
	w.stamp("DTEND", tz, m.start.Add(m.dur), false)
	if m.rrule != "" {
		w.line("RRULE:", m.rrule)
	}
	if !m.exdate.IsZero() {
		w.stamp("EXDATE", tz, m.exdate, false)
	}
	w.line("LOCATION:https://example.webex.com/example/j.php?MTID=m", uid)
	w.line("STATUS:CONFIRMED")
	w.line("CLASS:PUBLIC")
	w.folded("DESCRIPTION:" + webexDesc)
	w.line("ORGANIZER;CN=Webex Host:mailto:host@example.com")
	attendees(w, r, 5, false)
	w.line("END:VEVENT")
	if !m.moved.IsZero() {
		w.line("BEGIN:VEVENT")
		w.line("UID:", uid, "-webex@example.webex.com")
		w.stamp("DTSTAMP", "", g.Base, true)
		w.stamp("RECURRENCE-ID", tz, m.moved, false)
		w.line("SUMMARY:Design review ", strconv.Itoa(j))
		w.line("STATUS:CANCELLED")
		w.stamp("DTSTART", tz, m.moved, false)
		w.stamp("DTEND", tz, m.moved.Add(m.dur), false)
		w.line("END:VEVENT")
	}
}

func (g *Generator) outlookEvent(w *feedWriter, uid string, j int, m meeting, r *rand.Rand) {
	const tz = `;TZID=W. Europe Standard Time`
	id := "040000008200E00074C5B7101A82E00800000000" + uid
	busy := "BUSY"
	if r.IntN(10) == 0 {
		busy = "FREE"
	}
	w.line("BEGIN:VEVENT")
	w.folded("DESCRIPTION:" + outlookDesc)
	if m.rrule != "" {
		w.line("RRULE:", m.rrule)
	}
	if !m.exdate.IsZero() {
		w.stamp("EXDATE", tz, m.exdate, false)
	}
	w.line("UID:", id)
	w.line("SUMMARY:Quarterly review ", strconv.Itoa(j))
	w.stamp("DTSTART", tz, m.start, false)
	w.stamp("DTEND", tz, m.start.Add(m.dur), false)
	w.line("CLASS:PUBLIC")
	w.line("PRIORITY:5")
	w.stamp("DTSTAMP", "", g.Base, true)
	if busy == "FREE" {
		w.line("TRANSP:TRANSPARENT")
	} else {
		w.line("TRANSP:OPAQUE")
	}
	w.line("STATUS:CONFIRMED")
	w.line("SEQUENCE:0")
	w.line("LOCATION:Microsoft Teams Meeting")
	w.line("X-MICROSOFT-CDO-APPT-SEQUENCE:0")
	w.line("X-MICROSOFT-CDO-BUSYSTATUS:", busy)
	w.line("X-MICROSOFT-CDO-INTENDEDSTATUS:BUSY")
	w.line("X-MICROSOFT-CDO-ALLDAYEVENT:FALSE")
	w.line("X-MICROSOFT-CDO-IMPORTANCE:1")
	w.line("X-MICROSOFT-CDO-INSTTYPE:", map[bool]string{true: "1", false: "0"}[m.rrule != ""])
	w.folded("X-ALT-DESC;FMTTYPE=text/html:" + outlookAlt)
	w.line("X-MICROSOFT-DONOTFORWARDMEETING:FALSE")
	w.line("X-MICROSOFT-DISALLOW-COUNTER:FALSE")
	attendees(w, r, 2, false)
	w.line("END:VEVENT")
	if !m.moved.IsZero() {
		w.line("BEGIN:VEVENT")
		w.line("UID:", id)
		w.stamp("RECURRENCE-ID", tz, m.moved, false)
		w.line("SUMMARY:Quarterly review ", strconv.Itoa(j), " (moved)")
		w.stamp("DTSTART", tz, m.moved.Add(-30*time.Minute), false)
		w.stamp("DTEND", tz, m.moved.Add(m.dur-30*time.Minute), false)
		w.stamp("DTSTAMP", "", g.Base, true)
		w.line("X-MICROSOFT-CDO-BUSYSTATUS:BUSY")
		w.line("END:VEVENT")
	}
}

func (g *Generator) googleEvent(w *feedWriter, uid string, j int, m meeting, r *rand.Rand) {
	// Google writes recurring events in the calendar's zone and single ones
	// in UTC.
	const tz = ";TZID=Europe/London"
	w.line("BEGIN:VEVENT")
	if m.rrule != "" {
		w.stamp("DTSTART", tz, m.start, false)
		w.stamp("DTEND", tz, m.start.Add(m.dur), false)
		rule := m.rrule
		if r.IntN(3) == 0 {
			rule += ";UNTIL=" + g.Base.AddDate(0, 2, 0).Format("20060102T150405Z")
		}
		w.line("RRULE:", rule)
		if !m.exdate.IsZero() {
			w.stamp("EXDATE", tz, m.exdate, false)
		}
	} else {
		w.stamp("DTSTART", "", m.start, true)
		w.stamp("DTEND", "", m.start.Add(m.dur), true)
	}
	w.stamp("DTSTAMP", "", g.Base, true)
	w.line("ORGANIZER;CN=user@contoso.com:mailto:user@contoso.com")
	w.line("UID:", uid, "abcdefghijklmnopqrstuvwxyz@google.com")
	attendees(w, r, 4, true)
	w.line("X-APPLE-TRAVEL-ADVISORY-BEHAVIOR:AUTOMATIC")
	w.line("X-GOOGLE-CONFERENCE:https://meet.google.com/abc-defg-hij")
	w.stamp("CREATED", "", g.Base.AddDate(0, -1, 0), true)
	w.folded("DESCRIPTION:" + googleDesc)
	w.stamp("LAST-MODIFIED", "", g.Base.AddDate(0, 0, -1), true)
	w.line("LOCATION:")
	w.line("SEQUENCE:0")
	w.line("STATUS:CONFIRMED")
	w.line("SUMMARY:1:1 ", strconv.Itoa(j))
	w.line("TRANSP:OPAQUE")
	w.line("END:VEVENT")
	if !m.moved.IsZero() {
		w.line("BEGIN:VEVENT")
		w.stamp("DTSTART", tz, m.moved.Add(2*time.Hour), false)
		w.stamp("DTEND", tz, m.moved.Add(2*time.Hour+m.dur), false)
		w.stamp("DTSTAMP", "", g.Base, true)
		w.line("UID:", uid, "abcdefghijklmnopqrstuvwxyz@google.com")
		w.stamp("RECURRENCE-ID", tz, m.moved, false)
		w.line("SEQUENCE:1")
		w.line("STATUS:CONFIRMED")
		w.line("SUMMARY:1:1 ", strconv.Itoa(j), " (moved)")
		w.line("END:VEVENT")
	}
}
