package ical

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/calpresence/calpresence/sources"
)

// Limits: a feed of 100,000 events. FREQ=SECONDLY/MINUTELY and huge COUNTs
// are TestExpandBounded's (ics_test.go).

const (
	limitEvents = 100_000
	// limitStep is the distance between consecutive events' starts; every
	// tenth event also recurs daily three times.
	limitStep = 15 * time.Minute
	limitLen  = 30 * time.Minute
)

var limitBase = utc("2024-01-01T00:00:00Z")

// limitFeed generates a feed of n events. Compact events (about 100 bytes:
// UID, DTSTART, DTEND, a one-letter SUMMARY) let 100,000 fit in the default
// 10 MiB cap; otherwise each event also has the DTSTAMP, STATUS, LOCATION
// and SUMMARY a real server writes (about 190 bytes), and 100,000 of them do
// not.
func limitFeed(n int, compact bool) []byte {
	var b strings.Builder
	b.Grow(n * 240)
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//limits//EN\r\n")
	for i := range n {
		start := limitBase.Add(time.Duration(i) * limitStep)
		b.WriteString("BEGIN:VEVENT\r\nUID:e")
		b.WriteString(strconv.Itoa(i))
		b.WriteString("\r\nDTSTART:")
		b.WriteString(start.Format("20060102T150405Z"))
		b.WriteString("\r\nDTEND:")
		b.WriteString(start.Add(limitLen).Format("20060102T150405Z"))
		if compact {
			b.WriteString("\r\nSUMMARY:M")
		} else {
			b.WriteString("\r\nSUMMARY:Sync ")
			b.WriteString(strconv.Itoa(i))
		}
		if i%10 == 0 {
			b.WriteString("\r\nRRULE:FREQ=DAILY;COUNT=3")
		}
		if !compact {
			b.WriteString("\r\nDTSTAMP:20240101T000000Z\r\nSTATUS:CONFIRMED")
			b.WriteString("\r\nLOCATION:https://example.zoom.us/j/")
			b.WriteString(strconv.Itoa(100000 + i))
		}
		b.WriteString("\r\nEND:VEVENT\r\n")
	}
	b.WriteString("END:VCALENDAR\r\n")
	return []byte(b.String())
}

// limitWant counts the occurrences of limitFeed(n, _) overlapping
// [from, to), by brute force.
func limitWant(n int, from, to time.Time) int {
	count := 0
	for i := range n {
		instances := 1
		if i%10 == 0 {
			instances = 3
		}
		for k := range instances {
			s := limitBase.Add(time.Duration(i)*limitStep).AddDate(0, 0, k)
			if s.Before(to) && s.Add(limitLen).After(from) {
				count++
			}
		}
	}
	return count
}

// limitWindow is a 36-hour horizon in the middle of the feed.
var limitWindow = ExpandOptions{From: utc("2025-01-01T00:00:00Z"), To: utc("2025-01-02T12:00:00Z")}

func checkLimitResult(t *testing.T, res *Result, n int) {
	t.Helper()
	want := limitWant(n, limitWindow.From, limitWindow.To)
	if res.Events != n || len(res.Occurrences) != want || len(res.Warnings) != 0 {
		t.Fatalf("ParseExpand(%d events) = %d events, %d occurrences, %d warnings %.3q; want %d events, %d occurrences, none",
			n, res.Events, len(res.Occurrences), len(res.Warnings), res.Warnings, n, want)
	}
	for _, o := range res.Occurrences {
		if !o.Start.Before(limitWindow.To) || !o.End.After(limitWindow.From) || o.End.Sub(o.Start) != limitLen {
			t.Fatalf("occurrence %s %v..%v is outside the window or not %v long", o.UID, o.Start, o.End, limitLen)
		}
	}
}

// TestLimitsHundredThousandEvents: 100,000 compact events fit in the default
// size cap, come through the Fetcher, and expand correctly in a 36 h window.
// Memory is bounded: ParseExpand allocates within 2× of go-ical's bare
// decode of the same bytes and keeps only the occurrences.
func TestLimitsHundredThousandEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 events: not in -short")
	}
	data := limitFeed(limitEvents, true)
	if len(data) > sources.DefaultMaxFeedBytes {
		t.Fatalf("limitFeed(%d, compact) = %d bytes; want at most the default cap %d", limitEvents, len(data), sources.DefaultMaxFeedBytes)
	}
	t.Logf("%d compact events: %d bytes (%.0f per event)", limitEvents, len(data), float64(len(data))/limitEvents)

	path := filepath.Join(t.TempDir(), "big.ics")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fr, err := sources.NewFetcher(0, 0).Fetch(context.Background(), sources.FetchRequest{URL: "file://" + path})
	if err != nil {
		t.Fatalf("Fetch(%d bytes) with the default cap: %v", len(data), err)
	}
	if !bytes.Equal(fr.Body, data) {
		t.Fatalf("Fetch(%d bytes) = %d bytes, not the file", len(data), len(fr.Body))
	}
	fr = sources.FetchResult{}

	// Memory: what ParseExpand allocates stays within maxRatio of what
	// go-ical's bare decode of the same bytes allocates (counts and bytes;
	// both are deterministic, unlike time), and what it keeps is the
	// occurrences in the window, not the tree.
	const maxRatio = 2.0
	ours, oursBytes := allocsOf(func() {
		if _, err := ParseExpand(data, limitWindow); err != nil {
			t.Fatal(err)
		}
	})
	base, baseBytes := allocsOf(func() {
		if err := goICALDecode(data); err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("ParseExpand: %.1f allocations, %.0f bytes per event; go-ical decode: %.1f, %.0f (ratio %.2f, %.2f)",
		ours/limitEvents, oursBytes/limitEvents, base/limitEvents, baseBytes/limitEvents, ours/base, oursBytes/baseBytes)
	if ours > maxRatio*base || oursBytes > maxRatio*baseBytes {
		t.Errorf("ParseExpand(%d events) = %.0f allocations, %.0f bytes; want at most %.0f× go-ical's decode (%.0f, %.0f)",
			limitEvents, ours, oursBytes, maxRatio, base, baseBytes)
	}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := ParseExpand(data, limitWindow)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	checkLimitResult(t, res, limitEvents)
	kept := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("kept after GC: %d bytes for %d occurrences", kept, len(res.Occurrences))
	if kept > 1<<20 {
		t.Errorf("ParseExpand(%d events) keeps %d bytes for %d occurrences; want under 1 MiB (the tree must go)", limitEvents, kept, len(res.Occurrences))
	}
	runtime.KeepAlive(res)
	runtime.KeepAlive(data)
}

// allocsOf returns the allocations and bytes allocated by one call of f.
func allocsOf(f func()) (allocs, allocated float64) {
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	allocs = testing.AllocsPerRun(1, f)
	runtime.ReadMemStats(&ms1)
	// AllocsPerRun calls f twice: a warm-up and the measured run.
	return allocs, float64(ms1.TotalAlloc-ms0.TotalAlloc) / 2
}

// TestLimitsOversizeFeed: 100,000 events as a server writes them are over
// the default 10 MiB. The Fetcher refuses them with sources.ErrTooLarge and an error
// that names the (redacted) URL, however they arrive; with a 20 MiB cap the
// same bytes parse and expand.
func TestLimitsOversizeFeed(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 events: not in -short")
	}
	data := limitFeed(limitEvents, false)
	if len(data) <= sources.DefaultMaxFeedBytes || len(data) > 20<<20 {
		t.Fatalf("limitFeed(%d, full) = %d bytes; want between %d and %d", limitEvents, len(data), sources.DefaultMaxFeedBytes, 20<<20)
	}
	t.Logf("%d events: %d bytes (%.0f per event)", limitEvents, len(data), float64(len(data))/limitEvents)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/length.ics" {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		}
		w.Write(data)
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "big.ics")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	urls := []struct{ name, url, redacted string }{
		{"content-length", srv.URL + "/length.ics?token=s3cr3t", srv.URL + "/length.ics"},
		{"streamed", srv.URL + "/stream.ics?token=s3cr3t", srv.URL + "/stream.ics"},
		{"file", "file://" + path, "file://" + path},
	}
	for _, u := range urls {
		t.Run(u.name, func(t *testing.T) {
			_, err := sources.NewFetcher(0, 0).Fetch(context.Background(), sources.FetchRequest{URL: u.url})
			if !errors.Is(err, sources.ErrTooLarge) {
				t.Fatalf("Fetch(%s, %d bytes) error = %v; want sources.ErrTooLarge", u.name, len(data), err)
			}
			msg := err.Error()
			if !strings.Contains(msg, u.redacted) || !strings.Contains(msg, fmt.Sprint(sources.DefaultMaxFeedBytes)) || strings.Contains(msg, "s3cr3t") {
				t.Errorf("Fetch(%s) error = %q; want it to name %s and the limit %d, without the token", u.name, msg, u.redacted, sources.DefaultMaxFeedBytes)
			}

			fr, err := sources.NewFetcher(0, 20<<20).Fetch(context.Background(), sources.FetchRequest{URL: u.url})
			if err != nil {
				t.Fatalf("Fetch(%s) with a 20 MiB cap: %v", u.name, err)
			}
			if !bytes.Equal(fr.Body, data) {
				t.Fatalf("Fetch(%s) with a 20 MiB cap = %d bytes; want the %d bytes served", u.name, len(fr.Body), len(data))
			}
		})
	}
	res, err := ParseExpand(data, limitWindow)
	if err != nil {
		t.Fatal(err)
	}
	checkLimitResult(t, res, limitEvents)
}
