package ical

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParseExpand: no input panics, hangs or breaks the Result invariants.
// A panic that Parse or Expand recovered fails it too (checkNoPanic).
//
//	go test -run '^$' -fuzz FuzzParseExpand -fuzztime 10s ./sources/
func FuzzParseExpand(f *testing.F) {
	if files, err := filepath.Glob(filepath.Join(corpusDir, "ics", "*", "*.ics")); err == nil {
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add(zoomFeed(2))
	f.Add(vcal(ev("UID:a", "DTSTART;TZID=Europe/Berlin:20240330T023000", "DURATION:P1D", "RRULE:FREQ=DAILY;COUNT=3", "EXDATE;TZID=UTC:20240331T013000")))
	f.Add(vcal(ev("UID:r", "DTSTART:20240101T100000Z", "RRULE:FREQ=SECONDLY;BYSETPOS=-1"),
		ev("UID:r", "RECURRENCE-ID;RANGE=THISANDFUTURE:20240101T100001Z", "DTSTART:20240101T110000Z")))
	f.Add([]byte("BEGIN:VEVENT\nDTSTART;TZID=\"X:20240101T000000\"\nRDATE;VALUE=PERIOD:20240101T000000Z/P1W\nEND:VEVENT\n"))
	f.Add([]byte("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:2024"))
	opt := ExpandOptions{From: utc("2023-06-01T00:00:00Z"), To: utc("2025-06-01T00:00:00Z"), MaxPerEvent: 200}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := ParseExpand(data, opt)
		checkNoPanic(t, "fuzz input", res, err)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("ParseExpand error %q does not name the line", err)
			}
			return
		}
		for i, o := range res.Occurrences {
			if o.End.Before(o.Start) {
				t.Fatalf("occurrence %d ends before it starts: %v < %v", i, o.End, o.Start)
			}
			if o.Start.Equal(o.End) && (o.Start.Before(opt.From) || !o.Start.Before(opt.To)) ||
				!o.Start.Equal(o.End) && (!o.Start.Before(opt.To) || !o.End.After(opt.From)) {
				t.Fatalf("occurrence %d %v..%v outside the window", i, o.Start, o.End)
			}
			if i > 0 {
				p := res.Occurrences[i-1]
				if p.Start.After(o.Start) || p.Start.Equal(o.Start) && (p.UID > o.UID || p.UID == o.UID && p.RecurrenceID.After(o.RecurrenceID)) {
					t.Fatalf("occurrences %d and %d are not sorted", i-1, i)
				}
			}
		}
		_ = time.UTC
	})
}

// FuzzScannedLinesDecode: every content line of the scanner's output
// decodes (checkContentLine), as scanResult.checked tells the lean decoder,
// which then leaves lines out without checking them.
//
//	go test -run '^$' -fuzz FuzzScannedLinesDecode -fuzztime 60s ./sources/ical/
func FuzzScannedLinesDecode(f *testing.F) {
	for _, pattern := range []string{filepath.Join(corpusDir, "ics", "*", "*.ics"), filepath.Join("testdata", "invitations", "*")} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add(zoomFeed(2))
	f.Add([]byte("BEGIN:VCALENDAR\rBEGIN:VEVENT\rDESCRIPTION:a\r b\rMeeting ID: 1\r\r\rEND:VEVENT\rEND:VCALENDAR\r"))
	f.Add([]byte("BEGIN:VCALENDAR\nBEGIN:VEVENT\nATTENDEE;CN=\"a:b\";X=\"c\"d:mailto:x\nDESCRIPTION:x\n\tmore\nstray text\n \nEND:VEVENT\nEND:VCALENDAR"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := scanFeed(data)
		if err != nil || !sc.checked {
			return
		}
		d := newICSDecoder(sc.data)
		for {
			l, err := d.nextLine()
			if err != nil {
				return
			}
			if _, _, problem := checkContentLine(l); problem != "" {
				t.Fatalf("the scanner let through %q: %s", l, problem)
			}
		}
	})
}
