package sources

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestParseDTRepairs: values whose intent is plain are read as meant; the
// rest stay errors.
func TestParseDTRepairs(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
		kind dtKind
	}{
		{"20131009T170000T", "2013-10-09T17:00:00Z", kindFloating}, // Android exporter
		{"20131009t170000t", "2013-10-09T17:00:00Z", kindFloating},
		{"20131009T1700T", "2013-10-09T17:00:00Z", kindFloating}, // no seconds, stray T
		{"20131009T1700", "2013-10-09T17:00:00Z", kindFloating},  // no seconds
		{"20131009T1700Z", "2013-10-09T17:00:00Z", kindUTC},
		{"20131009T170000Z", "2013-10-09T17:00:00Z", kindUTC},
	} {
		got, err := parseDT(tt.in, false)
		if err != nil || !got.wall.Equal(utc(tt.want)) || got.kind != tt.kind {
			t.Errorf("parseDT(%q) = %v, %d, %v; want %s, %d, nil", tt.in, got.wall, got.kind, err, tt.want, tt.kind)
		}
	}
	for _, in := range []string{"20131009T", "20131009TT", "20131009T170000TT", "20131009T17000T", "20131009T170000X", "20131009T1700000"} {
		if got, err := parseDT(in, false); err == nil {
			t.Errorf("parseDT(%q) = %v, %d, nil; want an error", in, got.wall, got.kind)
		}
	}
}

// TestStrayTEvent: the Android exporter's event is read, not dropped.
func TestStrayTEvent(t *testing.T) {
	res, err := ParseExpand(vcal(ev("UID:android-1", "DTSTART:20131009T170000T", "DTEND:20131009T180000T", "SUMMARY:Standup")),
		ExpandOptions{From: utc("2013-10-01T00:00:00Z"), To: utc("2013-11-01T00:00:00Z"), Zone: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"2013-10-09T17:00Z/2013-10-09T18:00Z"}, brief(res)); diff != "" {
		t.Errorf("Expand(DTSTART:20131009T170000T) mismatch (-want +got):\n%s", diff)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("Expand(DTSTART:20131009T170000T) warnings = %q; want none", res.Warnings)
	}
}
