package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/calpresence/calpresence/app"
	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/internal/feedgen"
	"github.com/calpresence/calpresence/presence"
	"github.com/calpresence/calpresence/sources"
	"github.com/calpresence/calpresence/sync/engine"
	"github.com/calpresence/calpresence/sync/plan"
)

type options struct {
	feeds, meetings int
	history         int // past meetings per feed
	mode, state     string
	style           string
	seed            uint64
	cpuprofile      string
	memprofile      string
	restart         bool
	timeout         time.Duration
	log             *slog.Logger

	// soak and serve
	duration, sampleEvery, poll time.Duration
	url, listen                 string

	// boundary
	lead, latency time.Duration
	shift         time.Duration // moves the feeds' clock (quarter hours) by this much
}

// harness is the feed server and the configuration pointing at it.
type harness struct {
	gen     *feedgen.Generator
	srv     *httptest.Server
	served  *feedServer
	cfg     *config.Config
	fetcher *countingFetcher
	pres    *countingPresence
	dir     string // temporary directory for state files
	log     *slog.Logger
}

func newHarness(o options) (*harness, error) {
	gen := &feedgen.Generator{Seed: o.seed, Meetings: o.meetings, History: o.history, Base: time.Now().UTC().Truncate(24 * time.Hour).Add(o.shift), Style: o.style}
	fsrv := &feedServer{gen: gen, n: o.feeds}
	srv := httptest.NewUnstartedServer(fsrv)
	srv.Config.IdleTimeout = time.Minute // keep-alive between passes
	srv.Start()
	base := srv.URL
	if o.url != "" {
		base = strings.TrimSuffix(o.url, "/") // served by another process
	}

	cfg := config.Default()
	cfg.Graph.TenantID, cfg.Graph.ClientID, cfg.Graph.ClientSecret = "tenant", "client", "secret"
	cfg.Server.Listen = ""
	dir, err := os.MkdirTemp("", "calpresence-load-")
	if err != nil {
		srv.Close()
		return nil, err
	}
	cfg.State.Path = filepath.Join(dir, "state.db")
	if o.poll > 0 {
		cfg.Schedule.PollInterval = o.poll
	}
	width := len(strconv.Itoa(o.feeds))
	cfg.Sources = make([]config.Source, o.feeds)
	for i := range cfg.Sources {
		cfg.Sources[i] = config.Source{
			Name:  fmt.Sprintf("feed-%0*d", width, i),
			URL:   fmt.Sprintf("%s/feeds/%d.ics?token=t%dk", base, i, i),
			Users: []string{fmt.Sprintf("user%d@contoso.com", i)},
		}
	}
	if err := cfg.Validate(); err != nil {
		srv.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("generated config: %w", err)
	}
	return &harness{
		gen: gen, srv: srv, served: fsrv, cfg: cfg, dir: dir, log: o.log,
		fetcher: &countingFetcher{f: sources.NewFetcher(cfg.Schedule.FetchTimeout, cfg.Schedule.MaxFeedBytes)},
		pres:    &countingPresence{},
	}, nil
}

func (h *harness) close() {
	h.srv.Close()
	os.RemoveAll(h.dir)
}

// newEngine builds an engine like `calpresence run` does (app.New), on a
// state file in h.dir (bolt) or in memory as in a dry run (mem). The state
// file is kept across calls, so a second engine on it is a restart.
func (h *harness) newEngine(kind string) (*engine.Engine, func() error, error) {
	return h.newEngineOn(kind, h.pres)
}

// newEngineOn is newEngine with another Graph. closeFn releases the state.
func (h *harness) newEngineOn(kind string, p engine.Presence) (eng *engine.Engine, closeFn func() error, err error) {
	opts := []app.Option{app.WithPresence(p), app.WithFetcher(h.fetcher), app.WithRegistry(prometheus.NewRegistry())}
	if h.log != nil {
		opts = append(opts, app.WithLogger(h.log))
	}
	if kind != "bolt" {
		opts = append(opts, app.WithMemoryState())
	}
	a, err := app.New(context.Background(), h.cfg, opts...)
	if err != nil {
		return nil, nil, err
	}
	eng, err = a.NewEngine(context.Background())
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return eng, a.Close, nil
}

// plan is `calpresence plan` over the default window: now .. now+horizon.
func (h *harness) plan(ctx context.Context) ([]plan.Match, error) {
	now := time.Now()
	return engine.Plan(ctx, h.cfg, h.fetcher, engine.PlanRequest{From: now, To: now.Add(h.cfg.Schedule.Horizon)})
}

// occurrences sums the occurrences every source holds.
func occurrences(eng *engine.Engine) int {
	_, st := eng.Ready()
	n := 0
	for _, s := range st {
		n += s.Occurrences
	}
	return n
}

// feedServer serves feed i at /feeds/i.ics, generating it for each 200
// answer, with an ETag that If-None-Match turns into a 304.
type feedServer struct {
	gen *feedgen.Generator
	n   int

	ok, notModified atomic.Int64
	bytes           atomic.Int64
	genTime         atomic.Int64 // ns spent generating bodies
	bufs            sync.Pool
}

func (s *feedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/feeds/")
	name, ok2 := strings.CutSuffix(name, ".ics")
	i, err := strconv.Atoi(name)
	if !ok || !ok2 || err != nil || i < 0 || i >= s.n {
		http.NotFound(w, r)
		return
	}
	etag := s.gen.ETag(i)
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		s.notModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	t0 := time.Now()
	bp, _ := s.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	body := s.gen.Feed((*bp)[:0], i)
	s.genTime.Add(int64(time.Since(t0)))
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
	*bp = body
	s.bufs.Put(bp)
	s.ok.Add(1)
	s.bytes.Add(int64(len(body)))
}

// countingFetcher counts what the engine gets: every body it gets is parsed
// (a 304 or an unchanged hash is not).
type countingFetcher struct {
	f                      *sources.Fetcher
	fetches, bodies, fails atomic.Int64
}

func (c *countingFetcher) Fetch(ctx context.Context, req sources.FetchRequest) (sources.FetchResult, error) {
	res, err := c.f.Fetch(ctx, req)
	c.fetches.Add(1)
	switch {
	case err != nil:
		c.fails.Add(1)
	case !res.NotModified:
		c.bodies.Add(1)
	}
	return res, err
}

// countingPresence is Graph that answers at once and counts, noting when
// the first and last calls came (the reconcile part of a pass).
type countingPresence struct {
	sets, clears, resolves atomic.Int64

	mu          sync.Mutex
	first, last time.Time
}

func (p *countingPresence) note() {
	now := time.Now()
	p.mu.Lock()
	if p.first.IsZero() {
		p.first = now
	}
	p.last = now
	p.mu.Unlock()
}

// window returns and forgets the times of the first and last calls.
func (p *countingPresence) window() (first, last time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	first, last = p.first, p.last
	p.first, p.last = time.Time{}, time.Time{}
	return first, last
}

func (p *countingPresence) SetPresence(ctx context.Context, userID, availability, activity string, expiration time.Duration) error {
	p.sets.Add(1)
	p.note()
	return nil
}

func (p *countingPresence) ClearPresence(ctx context.Context, userID string) error {
	p.clears.Add(1)
	p.note()
	return nil
}

func (p *countingPresence) ResolveUser(ctx context.Context, address string) (presence.Person, error) {
	p.resolves.Add(1)
	return presence.Person{ID: "id-" + address, UPN: address}, nil
}

// ReadPresences reads nothing back: the load tool measures the sets and
// clears.
func (p *countingPresence) ReadPresences(ctx context.Context, ids []string) (map[string]presence.Shown, error) {
	return map[string]presence.Shown{}, nil
}

func (p *countingPresence) SetStatusMessage(ctx context.Context, userID, message string, expires time.Time) error {
	return nil
}

func (p *countingPresence) ClearStatusMessage(ctx context.Context, userID string) error { return nil }

// sample is what one pass cost.
type sample struct {
	wall      time.Duration
	cpu       time.Duration // user+system time of the process (the server's share included)
	gcs       uint32
	heapAfter uint64 // HeapInuse after a forced GC, at the end of the pass
	peakRSS   int64  // VmHWM during the pass (since the process start when resetPeak failed)
	peakReset bool
	fetches   int64
	bodies    int64
	fails     int64
	served    int64 // 200 answers
	bytes     int64 // in them
	notMod    int64 // 304 answers
	genTime   time.Duration
	sets      int64
	clears    int64
	occs      int // occurrences held (engine) or busy matches (plan)
	// calls is when the presence calls ran, from the start of the pass.
	callsFrom, callsTo time.Duration
}

type counters struct {
	fetches, bodies, fails, served, notMod, genTime, sets, clears, bytes int64
	gcs                                                                  uint32
}

func (h *harness) counters() counters {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return counters{
		fetches: h.fetcher.fetches.Load(), bodies: h.fetcher.bodies.Load(), fails: h.fetcher.fails.Load(),
		served: h.served.ok.Load(), bytes: h.served.bytes.Load(), notMod: h.served.notModified.Load(), genTime: h.served.genTime.Load(),
		sets: h.pres.sets.Load(), clears: h.pres.clears.Load(), gcs: ms.NumGC,
	}
}

// timed runs one pass and measures it.
func (h *harness) timed(pass func() (int, error)) (sample, error) {
	runtime.GC()
	reset := resetPeak()
	before := h.counters()
	h.pres.window()
	cpu0 := cpuTime()
	t0 := time.Now()
	n, err := pass()
	wall := time.Since(t0)
	cpu := cpuTime() - cpu0
	after := h.counters()
	var s sample
	s.wall, s.cpu, s.occs, s.peakReset = wall, cpu, n, reset
	s.peakRSS = peakRSS()
	s.gcs = after.gcs - before.gcs
	s.fetches, s.bodies, s.fails = after.fetches-before.fetches, after.bodies-before.bodies, after.fails-before.fails
	s.served, s.notMod = after.served-before.served, after.notMod-before.notMod
	s.bytes = after.bytes - before.bytes
	s.genTime = time.Duration(after.genTime - before.genTime)
	s.sets, s.clears = after.sets-before.sets, after.clears-before.clears
	if first, last := h.pres.window(); !first.IsZero() {
		s.callsFrom, s.callsTo = first.Sub(t0), last.Sub(t0)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.heapAfter = ms.HeapInuse
	return s, err
}

func measure(ctx context.Context, o options, out io.Writer) error {
	h, err := newHarness(o)
	if err != nil {
		return err
	}
	defer h.close()
	fmt.Fprintf(out, "calpresence-load: %d feeds × %d meetings", o.feeds, o.meetings)
	if o.history > 0 {
		fmt.Fprintf(out, " + %d past", o.history)
	}
	fmt.Fprintf(out, " (%s, seed %d), mode %s", o.style, o.seed, o.mode)
	if o.mode == "engine" {
		fmt.Fprintf(out, ", state %s", o.state)
	}
	fmt.Fprintf(out, "\n%s %s/%s, GOMAXPROCS=%d, NumCPU=%d, GOMEMLIMIT=%s, GOGC=%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH,
		runtime.GOMAXPROCS(0), runtime.NumCPU(), memLimitString(), envOr("GOGC", "100"))

	stopProfile, err := startCPUProfile(o.cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	writeHeap := func(suffix string) error {
		if o.memprofile == "" {
			return nil
		}
		return writeHeapProfile(o.memprofile + suffix)
	}

	if o.mode == "plan" {
		var matches []plan.Match
		s, err := h.timed(func() (int, error) {
			var err error
			matches, err = h.plan(ctx)
			return len(matches), err
		})
		stopProfile()
		report(out, "plan", o.feeds, s, "busy matches")
		runtime.KeepAlive(matches)
		if err != nil {
			return firstLines(err)
		}
		return writeHeap("")
	}

	eng, closeFn, err := h.newEngine(o.state)
	if err != nil {
		return err
	}
	defer func() {
		if closeFn != nil {
			closeFn()
		}
	}()
	defer func() { runtime.KeepAlive(eng) }() // measure the heap with the engine in it
	pass := func() (int, error) {
		err := eng.FirstPass(ctx)
		return occurrences(eng), err
	}
	s, err := h.timed(pass)
	stopProfile()
	report(out, "first pass", o.feeds, s, "occurrences")
	if err != nil {
		return firstLines(err)
	}
	if err := writeHeap(""); err != nil {
		return err
	}
	s, err = h.timed(pass)
	report(out, "unchanged pass", o.feeds, s, "occurrences")
	if err != nil {
		return firstLines(err)
	}
	if s.bodies != 0 {
		return fmt.Errorf("unchanged pass parsed %d feeds; want none", s.bodies)
	}
	if o.state == "bolt" && o.restart {
		if err := closeFn(); err != nil {
			return err
		}
		closeFn = nil
		if o.cpuprofile != "" {
			// The restart's profile apart: what a start costs.
			stopProfile()
			stopRestart, err := startCPUProfile(o.cpuprofile + ".restart")
			if err != nil {
				return err
			}
			defer stopRestart()
		}
		eng, closeFn, err = h.newEngine(o.state)
		if err != nil {
			return err
		}
		// Ready comes after the reconcile from the stored copies, before
		// the feeds are read: note when.
		t0 := time.Now()
		readyAt := make(chan time.Duration, 1)
		go func() {
			for {
				if eng.Reconciled() {
					readyAt <- time.Since(t0)
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		s, err = h.timed(pass)
		report(out, "restart pass", o.feeds, s, "occurrences")
		if err == nil && s.bodies != 0 {
			err = fmt.Errorf("restart pass parsed %d feeds; want none (the occurrences stored with each copy serve)", s.bodies)
		}
		fmt.Fprintf(out, "%-15s ready (reconciled from the stored copies) after %.2f s\n", "", (<-readyAt).Seconds())
		if err := writeHeap(".restart"); err != nil {
			return err
		}
		fmt.Fprintln(out, "  (restart: a new engine on the same state file installs the occurrences stored with each copy, reconciles, then gets 304s)")
		if err != nil {
			return firstLines(err)
		}
	}
	return ctx.Err()
}

func report(out io.Writer, name string, feeds int, s sample, what string) {
	rss := "peak RSS " + mb(s.peakRSS)
	if !s.peakReset {
		rss += " (since start)"
	}
	fmt.Fprintf(out, "%-15s %7.2f s  %6.0f feeds/s  CPU %.2f s  %d %s  %s  heap in use after GC %s  GCs %d\n",
		name+":", s.wall.Seconds(), float64(feeds)/s.wall.Seconds(), s.cpu.Seconds(), s.occs, what, rss, mb(int64(s.heapAfter)), s.gcs)
	calls := ""
	if s.sets+s.clears > 0 {
		calls = fmt.Sprintf(" (at %.2f–%.2f s)", s.callsFrom.Seconds(), s.callsTo.Seconds())
	}
	fmt.Fprintf(out, "%-15s fetches %d (200: %d, 304: %d, failed: %d), %s of ICS, parsed %d, presence set %d clear %d%s, server generating %.2f s\n",
		"", s.fetches, s.served, s.notMod, s.fails, mb(s.bytes), s.bodies, s.sets, s.clears, calls, s.genTime.Seconds())
}

func mb(n int64) string { return fmt.Sprintf("%.0f MB", float64(n)/1e6) }

// firstLines keeps a joined error of thousands of sources readable.
func firstLines(err error) error {
	lines := strings.Split(err.Error(), "\n")
	if len(lines) <= 5 {
		return err
	}
	return fmt.Errorf("%s\n… and %d more", strings.Join(lines[:5], "\n"), len(lines)-5)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func memLimitString() string {
	n := debug.SetMemoryLimit(-1)
	if n == 1<<63-1 {
		return "off"
	}
	if n%(1<<20) == 0 {
		return strconv.FormatInt(n>>20, 10) + "MiB"
	}
	return strconv.FormatInt(n, 10)
}

// cpuTime is the user and system time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeak resets the kernel's peak RSS of this process (VmHWM), so that
// each pass reports its own peak. Linux ≥ 4.0.
func resetPeak() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS is VmHWM from /proc/self/status, in bytes (0 when unknown).
func peakRSS() int64 { return procStatus("VmHWM:") }

// procStatus reads a size in kB from /proc/self/status (e.g. "VmRSS:"),
// in bytes (0 when unknown).
func procStatus(key string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// startCPUProfile writes a CPU profile to path ("": none) until stop is
// called; stop may be called again, to no effect.
// writeHeapProfile writes the heap profile to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}
