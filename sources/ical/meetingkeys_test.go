package ical

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMeetingKeys(t *testing.T) {
	tests := []struct {
		text string
		want []string
	}{
		{"https://us02web.zoom.us/j/83412345678?pwd=x", []string{"zoom:83412345678"}},
		{"HTTPS://Contoso.Zoom.US/J/83412345678", []string{"zoom:83412345678"}},
		{"https://zoom.us/w/98765432101", []string{"zoom:98765432101"}},
		{"zoommtg://zoom.us/join?action=join&confno=91234567890&pwd=x", []string{"zoom:91234567890"}},
		{"https://zoom.us/j/123", nil},                                      // too short to be a meeting number
		{"https://zoom.us/j/1234567890123", []string{"zoom:1234567890123"}}, // 13 digits: the longest taken
		// Longer than 13 digits: some other number, not a meeting (fuzz).
		{"Zoom.us/j/00000000000000", nil},
		{"zoommtg://zoom.us/join?confno=123456789012345", nil},
		{"Dial 123456789012345@contoso.webex.com", nil},
		{"Webex meeting number: 1234 5678 9012 34", nil},
		{"https://us02web.zoom.us/my/alice", nil}, // a personal link names no number
		{"see zoom.us/j/83412345678 and zoom.us/j/83412345678", []string{"zoom:83412345678"}},
		{"Join the Webex meeting\nMeeting number (access code): 2550 123 4567\n", []string{"webex:25501234567"}},
		{"WEBEX Meeting Number: 25501234567", []string{"webex:25501234567"}},
		{"Meeting number: 2550 123 4567", nil}, // no Webex in sight: another vendor's number
		{"Dial 25501234567@contoso.webex.com", []string{"webex:25501234567"}},
		{"meeting number: tbd", nil},
		{"Teams meeting ID: 123 456 789 012", nil},
		{"", nil},
	}
	for _, tt := range tests {
		if got := MeetingKeys(tt.text); !cmp.Equal(got, tt.want) {
			t.Errorf("MeetingKeys(%q) = %v; want %v", tt.text, got, tt.want)
		}
	}
}

// TestMeetingKeysInvitations reads the vendors' own invitation layouts
// (testdata/invitations) and checks that each occurrence carries its key,
// from LOCATION, DESCRIPTION or an X- property.
func TestMeetingKeysInvitations(t *testing.T) {
	tests := []struct {
		file string
		want map[string][]string // UID → keys
	}{
		{"zoom.ics", map[string][]string{
			"ZOOM83412345678": {"zoom:83412345678"},
			"ZOOM91234567890": {"zoom:91234567890"},
		}},
		{"webex.ics", map[string][]string{
			"M3wXyZaBcDeFgHiJkLmNoPqRsTuV": {"webex:25501234567"},
			"M4aBcDeF":                     {"webex:26619876543"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body, err := os.ReadFile("testdata/invitations/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			res, err := ParseExpand(body, ExpandOptions{From: utc("2027-03-01T00:00:00Z"), To: utc("2027-03-10T00:00:00Z"), Zone: time.UTC, MaxPerEvent: 100})
			if err != nil {
				t.Fatal(err)
			}
			got := make(map[string][]string)
			for _, o := range res.Occurrences {
				got[o.UID] = o.MeetingKeys
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MeetingKeys by UID (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMeetingKeysOverride: an override without join links of its own
// keeps its series' meeting (the number is the series').
func TestMeetingKeysOverride(t *testing.T) {
	body := vcal(
		ev("UID:r", "DTSTART:20270301T100000Z", "DTEND:20270301T110000Z", "RRULE:FREQ=DAILY;COUNT=2", "LOCATION:https://zoom.us/j/83412345678"),
		ev("UID:r", "RECURRENCE-ID:20270302T100000Z", "DTSTART:20270302T120000Z", "DTEND:20270302T130000Z", "SUMMARY:moved"),
	)
	res, err := ParseExpand(body, ExpandOptions{From: utc("2027-03-01T00:00:00Z"), To: utc("2027-03-05T00:00:00Z"), Zone: time.UTC, MaxPerEvent: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Occurrences) != 2 {
		t.Fatalf("ParseExpand = %d occurrences; want 2", len(res.Occurrences))
	}
	for _, o := range res.Occurrences {
		if !cmp.Equal(o.MeetingKeys, []string{"zoom:83412345678"}) {
			t.Errorf("occurrence %s: MeetingKeys = %v; want [zoom:83412345678]", o.Start, o.MeetingKeys)
		}
	}
}

func FuzzMeetingKeys(f *testing.F) {
	f.Add("https://us02web.zoom.us/j/83412345678?pwd=x Meeting number: 2550 123 4567 1@a.webex.com")
	f.Add("Zoom.us/j/00000000000000") // 14 digits: was taken as a key
	f.Fuzz(func(t *testing.T, s string) {
		lower := []byte(s)
		for i, c := range lower {
			lower[i] = lowerASCII(c)
		}
		for _, needle := range []string{"zoom", "webex", "zoom.us/", ".webex.com"} {
			if got, want := indexFold(s, needle), strings.Index(string(lower), needle); got != want {
				t.Errorf("indexFold(%q, %q) = %d; want %d", s, needle, got, want)
			}
		}
		for _, k := range MeetingKeys(s) {
			n, ok := strings.CutPrefix(k, KeyZoom)
			if !ok {
				n, ok = strings.CutPrefix(k, KeyWebex)
			}
			if !ok || len(n) < 9 || len(n) > 13 || strings.Trim(n, "0123456789") != "" {
				t.Errorf("MeetingKeys(%q) gave %q; want zoom: or webex: and 9 to 13 digits", s, k)
			}
		}
	})
}
