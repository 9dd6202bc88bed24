package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/calpresence/calpresence/internal/feedgen"
)

// serve serves the generated feeds on o.listen (loopback) until ctx is
// done, so that a soak can read them from another process and the
// process being measured is only the worker.
func serve(ctx context.Context, o options, out io.Writer) error {
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return usageError{fmt.Errorf("-listen: %w", err)}
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return usageError{fmt.Errorf("-listen: want a loopback address (got %q)", o.listen)}
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	gen := &feedgen.Generator{Seed: o.seed, Meetings: o.meetings, History: o.history, Base: time.Now().UTC().Truncate(24 * time.Hour), Style: o.style}
	srv := &http.Server{Handler: &feedServer{gen: gen, n: o.feeds}, IdleTimeout: 5 * time.Minute}
	fmt.Fprintf(out, "serving %d feeds at http://%s\n", o.feeds, ln.Addr())
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// soak runs the daemon's loop (engine.Engine.Run: first pass, then polls at
// the sources' interval and a reconcile at every boundary) for o.duration
// on a bbolt state file, and prints every o.sampleEvery what the process
// holds and spent: RSS, the CPU time used since the last sample, the
// goroutines, the Go heap, and the fetches made.
func soak(ctx context.Context, o options, out io.Writer) error {
	h, err := newHarness(o)
	if err != nil {
		return err
	}
	defer h.close()
	eng, closeFn, err := h.newEngine("bolt")
	if err != nil {
		return err
	}
	defer closeFn()
	fmt.Fprintf(out, "calpresence-load soak: %d feeds × %d meetings (%s, seed %d), poll %s, for %s\n", o.feeds, o.meetings, o.style, o.seed,
		h.cfg.SourcePollInterval(0), o.duration)
	fmt.Fprintf(out, "%s %s/%s, GOMAXPROCS=%d, NumCPU=%d, GOMEMLIMIT=%s, GOGC=%s, feeds from %s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH,
		runtime.GOMAXPROCS(0), runtime.NumCPU(), memLimitString(), envOr("GOGC", "100"), served(o))

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- eng.Run(runCtx) }()

	fmt.Fprintf(out, "%8s %8s %8s %9s %9s %10s %9s %8s %8s %8s %7s\n",
		"elapsed", "RSS MB", "HWM MB", "CPU s", "CPU total", "goroutines", "heap MB", "fetches", "200", "304", "calls")
	prev := h.counters()
	cpu0 := cpuTime()
	prevCPU := cpu0
	ready, profiling := false, false
	tick := time.NewTicker(o.sampleEvery)
	defer tick.Stop()
	end := time.NewTimer(o.duration)
	defer end.Stop()
	for {
		select {
		case err := <-done:
			return fmt.Errorf("engine stopped early: %v", err)
		case <-ctx.Done():
			stop()
			<-done
			return ctx.Err()
		case <-end.C:
			stop()
			<-done
			fmt.Fprintf(out, "done after %s: CPU %.1f s in all\n", time.Since(t0).Round(time.Second), (cpuTime() - cpu0).Seconds())
			return nil
		case <-tick.C:
		}
		if !ready {
			// Asked only until it is: at 100,000 sources a readiness
			// report costs ~0.1 CPU-s, which the samples would count.
			if ready, _ = eng.Ready(); ready {
				fmt.Fprintf(out, "(ready within %s)\n", time.Since(t0).Round(time.Second))
			}
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		c, cpu := h.counters(), cpuTime()
		if o.cpuprofile != "" && !profiling && ready && c.bodies == prev.bodies && c.fetches > prev.fetches {
			// The steady state only: from the first sample in which feeds
			// were polled and none was fetched in full (the first round
			// is over).
			f, err := os.Create(o.cpuprofile)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
			defer pprof.StopCPUProfile()
			profiling = true
			fmt.Fprintf(out, "(CPU profile of the steady state from %s)\n", time.Since(t0).Round(time.Second))
		}
		fmt.Fprintf(out, "%8s %8.0f %8.0f %9.2f %9.1f %10d %9.0f %8d %8d %8d %7d\n",
			time.Since(t0).Round(time.Second), float64(procStatus("VmRSS:"))/1e6, float64(procStatus("VmHWM:"))/1e6,
			(cpu - prevCPU).Seconds(), (cpu - cpu0).Seconds(), runtime.NumGoroutine(), float64(ms.HeapInuse)/1e6,
			c.fetches-prev.fetches, c.bodies-prev.bodies, (c.fetches-c.bodies-c.fails)-(prev.fetches-prev.bodies-prev.fails),
			(c.sets+c.clears)-(prev.sets+prev.clears))
		prev, prevCPU = c, cpu
	}
}

func served(o options) string {
	if o.url != "" {
		return o.url + " (another process)"
	}
	return "this process"
}
