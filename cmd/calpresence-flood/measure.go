package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/calpresence/calpresence/app"
	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph/graphtest"
	"github.com/calpresence/calpresence/signals"
)

const (
	meetingNumber = "83412345678"
	aliceID       = "a11ce000-0000-4000-8000-000000000001"
	zoomSecret    = "calpresence-flood-zoom-secret"
)

// measure runs the daemon, floods its webhook listener from a child
// process and reports memory and the signed meeting.ended's latency.
func measure(ctx context.Context, o options, out io.Writer) error {
	dir, err := os.MkdirTemp("", "calpresence-flood-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fake := &fakeTB{dir: dir}
	defer fake.cleanup()
	g := graphtest.NewServer(fake, graphtest.WithUsers(graphtest.User{ID: aliceID, UserPrincipalName: "alice@contoso.com", Mail: "alice@contoso.com"}))
	g.SetLatency(o.latency)

	cfg, err := floodConfig(dir, g)
	if err != nil {
		return err
	}
	logs := &lineCounter{}
	a, err := app.New(ctx, cfg, app.WithLogger(slog.New(slog.NewTextHandler(logs, nil))), app.WithListen("127.0.0.1:0", nil))
	if err != nil {
		return err
	}
	defer a.Close()
	runCtx, stop := context.WithCancel(ctx)
	if err := a.Start(runCtx); err != nil {
		stop()
		return err
	}
	defer func() { stop(); a.Wait() }()

	fmt.Fprintf(out, "calpresence-flood: %d connections × %d bytes declared, stalling after %d%s; Graph latency %s\n",
		o.conns, o.size, o.stall, map[bool]string{true: ", forged signature headers"}[o.forged], o.latency)
	fmt.Fprintf(out, "%s %s/%s, GOMAXPROCS=%d, NumCPU=%d\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), runtime.NumCPU())
	wait, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	defer cancelWait()
	if _, err := g.WaitFor(wait, func(c graphtest.Call) bool { return c.Op == graphtest.OpSetPresence && c.User == aliceID }); err != nil {
		return fmt.Errorf("alice was never set Busy: %w", err)
	}
	time.Sleep(time.Second) // the first pass's garbage, collected
	runtime.GC()
	rest := readMem()
	fmt.Fprintf(out, "resting: RSS %.1f MB, heap in use %.1f MB, %d goroutines\n", mb(rest.rss), mb(rest.heap), runtime.NumGoroutine())

	// Sample while the flood runs.
	peak := rest
	var peakGoroutines int
	sampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampling:
				return
			case <-tick.C:
			}
			m := readMem()
			peak.rss, peak.heap = max(peak.rss, m.rss), max(peak.heap, m.heap)
			peakGoroutines = max(peakGoroutines, runtime.NumGoroutine())
		}
	})
	refusedBefore := logs.count("webhook delivery refused")

	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-client", cfg.Webhooks.Listen, "-conns", strconv.Itoa(o.conns), "-size", strconv.Itoa(o.size), "-stall", strconv.Itoa(o.stall),
		"-hold", o.hold.String(), "-timeout", (o.hold + 30*time.Second).String()}
	if o.forged {
		args = append(args, "-forged")
	}
	child := exec.CommandContext(ctx, self, args...)
	var childOut bytes.Buffer
	child.Stdout, child.Stderr = &childOut, &childOut
	floodStart := time.Now()
	if err := child.Start(); err != nil {
		return fmt.Errorf("start the flood: %w", err)
	}
	select {
	case <-time.After(o.after):
	case <-ctx.Done():
		return ctx.Err()
	}

	// The signed meeting.ended, during the flood.
	body := fmt.Sprintf(`{"event":"meeting.ended","event_ts":%d,"payload":{"account_id":"AAA","object":{"id":%s,"uuid":"4444AAAiAAAAAiAiAiiAii==","host_id":"x1yCzABCDEfg","topic":"Weekly sync","type":2,"start_time":"%s","end_time":"%s","duration":60,"timezone":"UTC"}}}`,
		time.Now().UnixMilli(), meetingNumber, time.Now().Add(-10*time.Minute).UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+cfg.Webhooks.Listen+signals.PathZoom, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-zm-request-timestamp", ts)
	req.Header.Set("x-zm-signature", signals.ZoomSignature(zoomSecret, ts, []byte(body)))
	sent := time.Now()
	answer := "no answer"
	if resp, err := http.DefaultClient.Do(req); err != nil {
		answer = err.Error()
	} else {
		resp.Body.Close()
		answer = resp.Status
	}
	answered := time.Since(sent)
	clearWait, cancelClear := context.WithTimeout(ctx, 30*time.Second)
	defer cancelClear()
	clear, err := g.WaitFor(clearWait, func(c graphtest.Call) bool { return c.Op == graphtest.OpClearPresence && c.User == aliceID })
	cleared := "never (30 s)"
	if err == nil {
		cleared = clear.Time.Sub(sent).Round(time.Millisecond).String()
	}

	childErr := child.Wait()
	close(sampling)
	sampler.Wait()
	floodTook := time.Since(floodStart)
	time.Sleep(time.Second)
	runtime.GC()
	after := readMem()

	fmt.Fprint(out, childOut.String())
	if childErr != nil {
		fmt.Fprintf(out, "flood child: %v\n", childErr)
	}
	fmt.Fprintf(out, "signed meeting.ended sent %s into the flood: answered %s in %s; clearPresence reached Graph %s after it was sent\n",
		o.after, answer, answered.Round(time.Millisecond), cleared)
	fmt.Fprintf(out, "peak during the flood (%s): RSS %.1f MB (+%.1f MB over rest), heap in use %.1f MB, %d goroutines; VmHWM %.1f MB\n",
		floodTook.Round(time.Millisecond), mb(peak.rss), mb(peak.rss-rest.rss), mb(peak.heap), peakGoroutines, mb(readHWM()))
	fmt.Fprintf(out, "after: RSS %.1f MB, heap in use %.1f MB, %d goroutines; %d log lines about refusals\n",
		mb(after.rss), mb(after.heap), runtime.NumGoroutine(), logs.count("webhook delivery refused")-refusedBefore)
	return nil
}

// floodConfig is the daemon's configuration: one feed for alice with a
// Zoom meeting running now, the webhooks on a free loopback port.
func floodConfig(dir string, g *graphtest.Server) (*config.Config, error) {
	now := time.Now().UTC()
	const stamp = "20060102T150405Z"
	ics := strings.Join([]string{"BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//calpresence//flood//EN",
		"BEGIN:VEVENT", "UID:flood-weekly-sync@contoso.com", "DTSTAMP:" + now.Format(stamp),
		"DTSTART:" + now.Add(-10*time.Minute).Truncate(time.Minute).Format(stamp), "DTEND:" + now.Add(50*time.Minute).Truncate(time.Minute).Format(stamp),
		"SUMMARY:Weekly sync", "LOCATION:https://zoom.us/j/" + meetingNumber,
		"END:VEVENT", "END:VCALENDAR", ""}, "\r\n")
	feed := filepath.Join(dir, "alice.ics")
	if err := os.WriteFile(feed, []byte(ics), 0o600); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()

	cfg := config.Default()
	gc := g.Config()
	cfg.Graph.TenantID, cfg.Graph.ClientID, cfg.Graph.ClientSecret = gc.TenantID, gc.ClientID, gc.ClientSecret
	cfg.Graph.Endpoint, cfg.Graph.AuthorityHost, cfg.Graph.CAFile = gc.Endpoint, gc.AuthorityHost, gc.CAFile
	cfg.State.Path = filepath.Join(dir, "state.db")
	cfg.Sources = []config.Source{{Name: "alice", URL: "file://" + feed, Users: []string{"alice@contoso.com"}}}
	cfg.Webhooks = &config.Webhooks{Listen: addr, Zoom: &config.ZoomWebhook{SecretToken: zoomSecret}, MaxUnscheduled: config.DefaultWebhooks().MaxUnscheduled}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("flood config: %w", err)
	}
	return cfg, nil
}

type mem struct{ rss, heap uint64 }

// readMem reads the process's resident set (VmRSS) and the Go heap in use.
func readMem() mem {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return mem{rss: procStatus("VmRSS:"), heap: ms.HeapInuse}
}

func readHWM() uint64 { return procStatus("VmHWM:") }

// procStatus reads a kB field of /proc/self/status, in bytes.
func procStatus(field string) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, field); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// lineCounter counts the daemon's log lines by content.
type lineCounter struct {
	mu    sync.Mutex
	lines []string
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(p))
	for sc.Scan() {
		c.lines = append(c.lines, sc.Text())
	}
	return len(p), nil
}

func (c *lineCounter) count(sub string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, l := range c.lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// fakeTB is the slice of testing.TB that graphtest.NewServer uses, so
// that this tool can run the fake Graph outside a test.
type fakeTB struct {
	testing.TB // not set: any other method panics
	dir        string
	cleanups   []func()
	failed     atomic.Bool
}

func (t *fakeTB) Helper()                        {}
func (t *fakeTB) TempDir() string                { return t.dir }
func (t *fakeTB) Cleanup(f func())               { t.cleanups = append(t.cleanups, f) }
func (t *fakeTB) Logf(format string, a ...any)   { fmt.Fprintf(os.Stderr, format+"\n", a...) }
func (t *fakeTB) Errorf(format string, a ...any) { t.failed.Store(true); t.Logf(format, a...) }
func (t *fakeTB) Fatalf(format string, a ...any) { panic(fmt.Sprintf(format, a...)) }

func (t *fakeTB) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}
