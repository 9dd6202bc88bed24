// Command calpresence-flood measures the webhook listener under a flood:
// the daemon (app.New, wired as calpresence run wires it) with a Zoom
// webhook secret, one feed with a meeting running now for alice (LOCATION
// https://zoom.us/j/<number>), and a fake Graph (graph/graphtest) that
// answers in -latency. Once alice is set Busy it notes the resting memory,
// then a child process (this binary again, so that the daemon's memory is
// measured alone) opens -conns connections at once, each POSTing an
// unsigned body that declares -size bytes and stalls after -stall bytes.
// During the flood it sends a signed meeting.ended for the meeting and
// times it until clearPresence reaches the fake; then it prints the peak
// memory against the resting one.
//
//	calpresence-flood -conns 2000 -size 1048576 -stall 921600
//	calpresence-flood -forged -size 60000 -stall 50000
//
// -forged adds signature headers shaped as Zoom's, which only the body
// can prove wrong: such uploads get past the header checks and hold the
// listener's body slots until the body deadline cuts them.
//
// Everything stays on loopback; the flood is bounded by -conns and -hold
// and the whole run by -timeout.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "calpresence-flood:", err)
		}
		os.Exit(1)
	}
}

type options struct {
	conns       int
	size, stall int
	forged      bool
	latency     time.Duration
	hold        time.Duration
	timeout     time.Duration
	after       time.Duration
	client      string // the child's mode: the address to flood
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("calpresence-flood", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: calpresence-flood [-conns N] [-size BYTES] [-stall BYTES] [-forged] [flags]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Floods the daemon's webhook listener on loopback with slow unsigned uploads and times a signed meeting.ended sent during it.")
		fmt.Fprintln(stderr)
		fs.PrintDefaults()
	}
	var o options
	fs.IntVar(&o.conns, "conns", 2000, "connections opened at once")
	fs.IntVar(&o.size, "size", 1<<20, "Content-Length each upload declares")
	fs.IntVar(&o.stall, "stall", 900<<10, "bytes of the body each upload sends before it stalls")
	fs.BoolVar(&o.forged, "forged", false, "send signature headers shaped as Zoom's (wrong ones)")
	fs.DurationVar(&o.latency, "latency", 150*time.Millisecond, "how long the fake Graph takes to answer")
	fs.DurationVar(&o.hold, "hold", 15*time.Second, "how long each flood connection is held open at most")
	fs.DurationVar(&o.after, "after", time.Second, "when, after the flood started, the signed meeting.ended is sent")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up after this long")
	fs.StringVar(&o.client, "client", "", "(internal) flood this loopback address and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || o.conns < 1 || o.size < 0 || o.stall < 0 || o.stall > o.size {
		fs.Usage()
		return errors.New("want -conns ≥ 1 and 0 ≤ -stall ≤ -size, and no arguments")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := raiseFileLimit(uint64(o.conns) + 512); err != nil {
		return err
	}
	if o.client != "" {
		return flood(ctx, o, bufio.NewWriter(stdout))
	}
	return measure(ctx, o, stdout)
}

// raiseFileLimit raises the soft limit on open files to at least n (the
// hard limit permitting): every flood connection is a descriptor on both
// sides.
func raiseFileLimit(n uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("open files limit: %w", err)
	}
	if l.Cur >= n {
		return nil
	}
	if l.Max < n {
		return fmt.Errorf("open files: hard limit %d, want %d (ulimit -Hn)", l.Max, n)
	}
	l.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("raise open files limit to %d: %w", n, err)
	}
	return nil
}
