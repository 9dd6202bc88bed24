// Command calpresence-load measures a full pass over many feeds, the
// BENCHMARKS.md target: 10,000 users with 10,000 feeds of ~50
// meetings, fetched from loopback, parsed, expanded and planned in ≤ 15 s on
// 2 cores with a peak RSS ≤ 512 MB.
//
// It serves generated feeds (Zoom, Webex, Outlook and Google styles, about
// 1.75 KB per meeting) from an in-process HTTP/1.1 server on loopback that
// answers If-None-Match with 304, and times either the engine's first pass
// (what `calpresence run` does before it starts scheduling: load the last
// good copies, read every source, reconcile) followed by a second, unchanged
// pass, or `calpresence plan` (engine.Plan). Presence calls go to a counting
// fake: this tool does not import graph/.
//
//	calpresence-load -feeds 10000 -meetings 50 -mode engine -state bolt
//	calpresence-load -feeds 200 -meetings 5 -history 4000 -mode plan
//	GOMEMLIMIT=256MiB calpresence-load -mode plan
//
// -mode soak runs the daemon's loop (Engine.Run: polls at -poll, a
// reconcile at every boundary) for -duration on a state file and prints
// RSS, CPU, goroutines and fetches every -sample; with -url it reads the
// feeds from another process started with -mode serve, so that the
// process measured is only the worker:
//
//	calpresence-load -mode serve -listen 127.0.0.1:18440 &
//	GOMEMLIMIT=384MiB calpresence-load -mode soak -url http://127.0.0.1:18440 -poll 60s -duration 1h
//
// It honours GOMEMLIMIT and GOGC from the environment; -memlimit sets the
// limit itself. Everything stays on loopback and it stops by itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "calpresence-load:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("calpresence-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: calpresence-load [-feeds N] [-meetings M] [-history H] [-mode engine|plan] [-state bolt|mem] [flags]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Times a full pass over N generated feeds served from loopback (BENCHMARKS.md).")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	var o options
	fs.IntVar(&o.feeds, "feeds", 10000, "number of feeds, one user each")
	fs.IntVar(&o.meetings, "meetings", 50, "meetings (VEVENTs) per feed")
	fs.IntVar(&o.history, "history", 0, "past meetings per feed besides, as published calendars carry them: single VEVENTs on the working days before today, three a day")
	fs.StringVar(&o.mode, "mode", "engine", "engine: the daemon's first pass, then an unchanged one; plan: engine.Plan;\nsoak: the daemon's Run for -duration, sampling RSS and CPU every -sample; serve: only serve the feeds on -listen;\nboundary: the daemon's Run against a Graph of -latency, timing its first pass and a quarter hour -lead after the start")
	fs.StringVar(&o.state, "state", "bolt", "engine state: bolt (a state file in a temporary directory) or mem (dry-run style)")
	fs.StringVar(&o.style, "style", "mixed", "feed style: mixed, zoom, webex, outlook or google")
	fs.Uint64Var(&o.seed, "seed", 1, "generator seed")
	memlimit := fs.String("memlimit", "", "soft memory limit, e.g. 256MiB (default: GOMEMLIMIT)")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the run to `file` (engine with bolt: the restart pass to file.restart; soak: the steady state, from the first minute with no feed fetched in full)")
	fs.StringVar(&o.memprofile, "memprofile", "", "write a heap profile after the first pass to `file` (and after the restart pass to file.restart; boundary mode: at the end of the first pass)")
	fs.BoolVar(&o.restart, "restart", true, "engine with bolt: also time a restart (a new engine on the same state file)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.DurationVar(&o.duration, "duration", time.Hour, "soak: how long to run")
	fs.DurationVar(&o.sampleEvery, "sample", time.Minute, "soak: how often to sample RSS and CPU")
	fs.DurationVar(&o.poll, "poll", 0, "poll interval of every source (default: schedule.poll_interval, 5m)")
	fs.StringVar(&o.url, "url", "", "soak, engine: read the feeds from a `base URL` served by -mode serve (another process) instead of an in-process server")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "serve: loopback address to listen on")
	fs.DurationVar(&o.lead, "lead", 2*time.Minute, "boundary: how long after the start a quarter hour falls (the feeds' clock is shifted)")
	fs.DurationVar(&o.latency, "latency", 100*time.Millisecond, "boundary: how long Graph takes to answer a call")
	verbose := fs.Bool("v", false, "log the engine's warnings to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case o.feeds < 1 || o.meetings < 1:
		return usageError{errors.New("-feeds and -meetings must be at least 1")}
	case o.history < 0:
		return usageError{errors.New("-history must not be negative")}
	case o.mode != "engine" && o.mode != "plan" && o.mode != "soak" && o.mode != "serve" && o.mode != "boundary":
		return usageError{fmt.Errorf("-mode: want engine, plan, soak, serve or boundary (got %q)", o.mode)}
	case o.mode == "soak" && (o.duration <= 0 || o.sampleEvery <= 0):
		return usageError{errors.New("-duration and -sample must be positive")}
	case o.state != "bolt" && o.state != "mem":
		return usageError{fmt.Errorf("-state: want bolt or mem (got %q)", o.state)}
	case !strings.Contains("mixed zoom webex outlook google", o.style) || o.style == "":
		return usageError{fmt.Errorf("-style: want mixed, zoom, webex, outlook or google (got %q)", o.style)}
	}
	if *memlimit != "" {
		n, err := parseSize(*memlimit)
		if err != nil {
			return usageError{fmt.Errorf("-memlimit: %w", err)}
		}
		debug.SetMemoryLimit(n)
	}
	o.log = slog.New(slog.DiscardHandler)
	if *verbose {
		o.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	switch o.mode {
	case "serve":
		return serve(ctx, o, stdout)
	case "soak":
		ctx, cancel := context.WithTimeout(ctx, o.duration+o.timeout)
		defer cancel()
		return soak(ctx, o, stdout)
	case "boundary":
		ctx, cancel := context.WithTimeout(ctx, o.lead+o.timeout)
		defer cancel()
		return boundary(ctx, o, stdout)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return measure(ctx, o, stdout)
}

// parseSize reads a byte count the way GOMEMLIMIT does: a number with an
// optional B, KiB, MiB, GiB or TiB suffix.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 256MiB)", s)
	}
	return n * mult, nil
}
