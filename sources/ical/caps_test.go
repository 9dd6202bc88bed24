package ical

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// capsFeed is n one-hour events starting on the hour from base, the first
// repeating every minute when minutely.
func capsFeed(base time.Time, n int, minutely bool) []byte {
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n")
	for i := range n {
		s := base.Add(time.Duration(i) * time.Hour)
		fmt.Fprintf(&b, "BEGIN:VEVENT\r\nUID:e%d\r\nDTSTAMP:20000101T000000Z\r\nDTSTART:%s\r\nDTEND:%s\r\n", i,
			s.Format("20060102T150405Z"), s.Add(time.Minute).Format("20060102T150405Z"))
		if minutely && i == 0 {
			b.WriteString("RRULE:FREQ=MINUTELY\r\n")
		}
		b.WriteString("END:VEVENT\r\n")
	}
	b.WriteString("END:VCALENDAR\r\n")
	return []byte(b.String())
}

func TestParseExpandFeedCaps(t *testing.T) {
	base := time.Date(2027, 3, 4, 0, 0, 0, 0, time.UTC)
	win := ExpandOptions{From: base, To: base.Add(36 * time.Hour)}
	tests := []struct {
		name       string
		data       []byte
		maxEvents  int
		maxOccs    int
		wantErr    bool
		wantOccs   int
		wantErrMsg string
	}{
		{"events at the cap", capsFeed(base, 30, false), 30, 0, false, 30, ""},
		{"events over the cap", capsFeed(base, 31, false), 30, 0, true, 0, "31 VEVENTs, more than the 30 allowed: over the limit"},
		{"occurrences at the cap", capsFeed(base, 1, true), 0, 1000, false, 1000, ""},
		{"occurrences over the cap", capsFeed(base, 3, true), 0, 1001, true, 0, "more than 1001 occurrences in the window: over the limit"},
		{"no caps", capsFeed(base, 31, true), 0, 0, false, 1030, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := win
			opt.MaxEvents, opt.MaxOccurrences = tt.maxEvents, tt.maxOccs
			res, err := ParseExpand(tt.data, opt)
			if tt.wantErr {
				if !errors.Is(err, ErrOverLimit) || err.Error() != tt.wantErrMsg {
					t.Fatalf("ParseExpand() error = %v; want %q wrapping ErrOverLimit", err, tt.wantErrMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseExpand() error = %v; want none", err)
			}
			if len(res.Occurrences) != tt.wantOccs {
				t.Errorf("ParseExpand() = %d occurrences; want %d", len(res.Occurrences), tt.wantOccs)
			}
		})
	}
}

// A feed over the event cap is refused before it is decoded: it costs a
// small part of what parsing it would.
func TestParseExpandEventCapStopsEarly(t *testing.T) {
	base := time.Date(2027, 3, 4, 0, 0, 0, 0, time.UTC)
	data := capsFeed(base, 5000, false)
	opt := ExpandOptions{From: base, To: base.Add(36 * time.Hour)}
	full := testing.AllocsPerRun(3, func() { _, _ = ParseExpand(data, opt) })
	opt.MaxEvents = 100
	capped := testing.AllocsPerRun(3, func() {
		if _, err := ParseExpand(data, opt); !errors.Is(err, ErrOverLimit) {
			t.Fatalf("ParseExpand() error = %v; want ErrOverLimit", err)
		}
	})
	if capped > full/5 {
		t.Errorf("refusing 5,000 events over a cap of 100 took %.0f allocations; parsing them all %.0f; want under a fifth", capped, full)
	}
}
