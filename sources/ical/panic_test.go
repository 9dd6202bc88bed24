package ical

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goical "github.com/emersion/go-ical"
)

// checkNoPanic fails tb when parsing or expanding recovered a panic.
// Production turns a panic into a parse error or a "cannot expand" warning
// and carries on; a test that accepted any error or warning would then be
// blind to it. The fuzz target and the corpus tests call this first.
func checkNoPanic(tb testing.TB, name string, res *Result, err error) {
	tb.Helper()
	if pe := (*panicError)(nil); errors.As(err, &pe) {
		tb.Errorf("Parse(%s) panicked (recovered into %q); want a repair or an error", name, err)
	}
	if res != nil && res.recovered > 0 {
		tb.Errorf("Expand(%s) panicked %d times (recovered into warnings %q); want none", name, res.recovered, res.Dropped)
	}
}

// failRecorder is a testing.TB that records failures instead of failing.
type failRecorder struct {
	testing.TB
	msgs []string
}

func (r *failRecorder) Helper() {}
func (r *failRecorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}
func (r *failRecorder) Fatalf(format string, args ...any) { r.Errorf(format, args...) }

// rawScan hands go-ical the bytes as they are: what Parse would do if the
// scanner missed a line.
func rawScan(data []byte) (*scanResult, error) {
	return &scanResult{data: data, cals: []scanCal{{line: 1}}}, nil
}

// msTimezones is the line of node-ical/ms_timezones.ics that makes go-ical
// panic: the value inside the TZID's quotes leaves nothing after the closing
// quote, and go-ical's decodeParam reads the next byte of an empty string.
const msTimezones = `DTSTART;TZID="W. Europe Standard Time:20200609T090000"`

// TestPanicFailsTheCheck: a panic recovered in Parse or in Expand is seen by
// checkNoPanic, which the fuzz target and the corpus tests rely on.
func TestPanicFailsTheCheck(t *testing.T) {
	data := vcal(ev("UID:ms", msTimezones, "DTEND;TZID=W. Europe Standard Time:20200609T093000"))

	t.Run("parse", func(t *testing.T) {
		// The decoder returns an error where go-ical panicked; a scanner
		// that panics stands for any panic left in parse.
		panics := func([]byte) (*scanResult, error) { panic("boom") }
		cal, err := parse(data, panics, 0, time.Time{})
		var pe *panicError
		if cal != nil || !errors.As(err, &pe) {
			t.Fatalf("parse(%q) with a panicking scanner = %v, %v; want a recovered panic", msTimezones, cal, err)
		}
		if !strings.HasPrefix(err.Error(), "line 1: malformed calendar: ") {
			t.Errorf("recovered panic error %q; want it to name the line", err)
		}
		rec := &failRecorder{TB: t}
		checkNoPanic(rec, "raw", nil, err)
		if len(rec.msgs) != 1 {
			t.Errorf("checkNoPanic(%v) reported %q; want one failure", err, rec.msgs)
		}
		// Wrapped, as callers wrap it, it is still seen.
		rec = &failRecorder{TB: t}
		checkNoPanic(rec, "raw", nil, fmt.Errorf("source %q: %w", "x", err))
		if len(rec.msgs) != 1 {
			t.Errorf("checkNoPanic(wrapped) reported %q; want one failure", rec.msgs)
		}
	})

	t.Run("the scanner repairs it", func(t *testing.T) {
		res, err := ParseExpand(data, ExpandOptions{From: utc("2020-06-01T00:00:00Z"), To: utc("2020-07-01T00:00:00Z")})
		checkNoPanic(t, msTimezones, res, err)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"2020-06-09T07:00Z/2020-06-09T07:30Z"}
		if got := brief(res); !slices.Equal(got, want) {
			t.Errorf("ParseExpand(%q) = %v; want %v", msTimezones, got, want)
		}
	})

	t.Run("the corpus file", func(t *testing.T) {
		file := filepath.Join(corpusDir, "ics", "node-ical", "ms_timezones.ics")
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := goICALAll(data); err == nil || !strings.HasPrefix(err.Error(), "panic:") {
			t.Errorf("go-ical on %s as it is: %v; want a (recovered) panic, the reason for the repair", file, err)
		}
		if _, err := parse(data, rawScan, 0, time.Time{}); err == nil || errors.As(err, new(*panicError)) {
			t.Errorf("parse of %s without the scanner: %v; want the decoder's error", file, err)
		}
		res, err := ParseExpand(data, ExpandOptions{From: utc("2020-06-01T00:00:00Z"), To: utc("2020-07-01T00:00:00Z")})
		checkNoPanic(t, file, res, err)
		if err != nil || len(res.Occurrences) == 0 {
			t.Errorf("ParseExpand(%s) = %v, %v; want occurrences", file, res, err)
		}
	})

	t.Run("expand", func(t *testing.T) {
		cal, err := Parse(vcal(
			"BEGIN:VTIMEZONE", "TZID:Bad/Zone", "BEGIN:STANDARD", "DTSTART:19700101T000000",
			"TZOFFSETFROM:+0100", "TZOFFSETTO:+0100", "END:STANDARD", "END:VTIMEZONE",
			ev("UID:a", "DTSTART;TZID=Bad/Zone:20240101T100000", "DURATION:PT1H"),
			ev("UID:b", "DTSTART:20240101T120000Z", "DURATION:PT1H")))
		if err != nil {
			t.Fatal(err)
		}
		// A parse tree go-ical never builds: building the zone panics.
		vtz := cal.roots[0].vtz["Bad/Zone"]
		vtz.Children = append(vtz.Children, (*goical.Component)(nil))
		res := cal.Expand(ExpandOptions{From: utc("2024-01-01T00:00:00Z"), To: utc("2024-01-02T00:00:00Z")})
		if res.recovered != 1 || len(res.Dropped) != 1 || !strings.Contains(res.Dropped[0], `UID "a": cannot expand: `) {
			t.Fatalf("Expand(nil VTIMEZONE child) recovered %d, dropped %q; want 1 and a \"cannot expand\" for UID a", res.recovered, res.Dropped)
		}
		if got, want := brief(res), []string{"2024-01-01T12:00Z/2024-01-01T13:00Z"}; !slices.Equal(got, want) {
			t.Errorf("Expand = %v; want %v (the other event still expands)", got, want)
		}
		rec := &failRecorder{TB: t}
		checkNoPanic(rec, "nil child", res, nil)
		if len(rec.msgs) != 1 {
			t.Errorf("checkNoPanic(recovered=1) reported %q; want one failure", rec.msgs)
		}
	})

	t.Run("no panic passes", func(t *testing.T) {
		res, err := ParseExpand(vcal(ev("UID:a", "DTSTART:20240101T100000Z")), ExpandOptions{})
		rec := &failRecorder{TB: t}
		checkNoPanic(rec, "clean", res, err)
		if len(rec.msgs) != 0 {
			t.Errorf("checkNoPanic(clean feed) reported %q; want none", rec.msgs)
		}
	})
}
