package main

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
)

// The full-pass figure of BENCHMARKS.md at a size that suits
// `go test` (the tool itself runs the 10,000 feeds; see BENCHMARKS.md):
//
//	go test -run '^$' -bench FullPass -benchtime 3x ./cmd/calpresence-load/
//	go test -run '^$' -bench FullPass -benchtime 1x ./cmd/calpresence-load/ -load.feeds 10000
var (
	benchFeeds    = flag.Int("load.feeds", 1000, "feeds in BenchmarkFullPass")
	benchMeetings = flag.Int("load.meetings", 50, "meetings per feed in BenchmarkFullPass")
)

func TestRun(t *testing.T) {
	for _, args := range [][]string{
		{"-feeds", "24", "-meetings", "10", "-state", "bolt"},
		{"-feeds", "24", "-meetings", "10", "-state", "mem"},
		{"-feeds", "24", "-meetings", "10", "-mode", "plan"},
		{"-feeds", "24", "-meetings", "10", "-history", "300", "-state", "mem"},
	} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, &out, &errb); err != nil {
			t.Fatalf("run(%q) error: %v\n%s%s", args, err, out.String(), errb.String())
		}
		got := out.String()
		want := []string{"first pass:", "fetches 24 (200: 24, 304: 0, failed: 0),", "parsed 24,", "unchanged pass:", "fetches 24 (200: 0, 304: 24, failed: 0), 0 MB of ICS, parsed 0,"}
		if args[len(args)-1] == "plan" {
			want = []string{"plan:", "fetches 24 (200: 24, 304: 0, failed: 0)"}
		}
		if args[len(args)-1] == "bolt" {
			want = append(want, "restart pass:", "ready (reconciled from the stored copies) after ")
		}
		if slices.Contains(args, "-history") {
			want = append(want, "24 feeds × 10 meetings + 300 past (mixed, seed 1)")
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("run(%q) output lacks %q:\n%s", args, w, got)
			}
		}
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{{"-mode", "x"}, {"-state", "disk"}, {"-feeds", "0"}, {"-history", "-1"}, {"-memlimit", "lots"}, {"-style", "icloud"}} {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, &out, &errb)
		if _, ok := err.(usageError); !ok {
			t.Errorf("run(%q) = %v; want a usage error", args, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"256MiB": 256 << 20, "1GiB": 1 << 30, "1000": 1000, "64KiB": 64 << 10} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

// BenchmarkFullPass times the engine's first pass (fetch from loopback,
// parse, expand, plan, and the calls to a Graph that answers at once) on a
// fresh state, the unchanged pass after it, and engine.Plan.
func BenchmarkFullPass(b *testing.B) {
	o := options{feeds: *benchFeeds, meetings: *benchMeetings, style: "mixed", seed: 1, log: slog.New(slog.DiscardHandler)}
	h, err := newHarness(o)
	if err != nil {
		b.Fatal(err)
	}
	defer h.close()
	ctx := context.Background()
	report := func(b *testing.B, occs int) {
		b.ReportMetric(float64(o.feeds*b.N)/b.Elapsed().Seconds(), "feeds/s")
		b.ReportMetric(float64(occs), "occurrences")
	}
	for _, kind := range []string{"bolt", "mem"} {
		b.Run("engine/"+kind, func(b *testing.B) {
			occs := 0
			for b.Loop() {
				b.StopTimer()
				os.Remove(h.cfg.State.Path)
				eng, closeFn, err := h.newEngine(kind)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := eng.FirstPass(ctx); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				occs = occurrences(eng)
				closeFn()
				b.StartTimer()
			}
			report(b, occs)
		})
	}
	b.Run("unchanged/bolt", func(b *testing.B) {
		os.Remove(h.cfg.State.Path)
		eng, closeFn, err := h.newEngine("bolt")
		if err != nil {
			b.Fatal(err)
		}
		defer closeFn()
		if err := eng.FirstPass(ctx); err != nil {
			b.Fatal(err)
		}
		parsed := h.fetcher.bodies.Load()
		for b.Loop() {
			if err := eng.FirstPass(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if n := h.fetcher.bodies.Load() - parsed; n != 0 {
			b.Errorf("unchanged passes parsed %d feeds; want 0", n)
		}
		report(b, occurrences(eng))
	})
	b.Run("plan", func(b *testing.B) {
		occs := 0
		for b.Loop() {
			m, err := h.plan(ctx)
			if err != nil {
				b.Fatal(err)
			}
			occs = len(m)
		}
		report(b, occs)
	})
}

func TestSoak(t *testing.T) {
	var out, errb bytes.Buffer
	args := []string{"-mode", "soak", "-feeds", "12", "-meetings", "5", "-poll", "1s", "-duration", "2500ms", "-sample", "1s"}
	if err := run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("run(%q) error: %v\n%s%s", args, err, out.String(), errb.String())
	}
	got := out.String()
	for _, w := range []string{"soak: 12 feeds × 5 meetings", "elapsed   RSS MB", "done after "} {
		if !strings.Contains(got, w) {
			t.Errorf("run(%q) output lacks %q:\n%s", args, w, got)
		}
	}
	if n := strings.Count(got, "\n"); n < 5 {
		t.Errorf("run(%q) printed %d lines; want a header and 2 samples:\n%s", args, n, got)
	}
}
