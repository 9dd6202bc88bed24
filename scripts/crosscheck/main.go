// Command crosscheck compares what `calpresence plan` makes of every file of
// the iCalendar corpus (sources/ical/testdata/corpus) with an independent
// implementation, the Mozilla ical.js oracle in ../shared/tools/oracle. It
// is a report, not a
// test: it prints one line per file and a summary, and exits 0 even when the
// two disagree. scripts/crosscheck.sh builds the binaries, installs the
// oracle and runs it; see docs/crosscheck.md.
//
//	crosscheck -calpresence BIN -oracle DIR -corpus DIR [-v] [-from T -to T] [FILE...]
//
// Both sides get the same configuration and are reduced to a multiset of
// (uid, start, end) in UTC:
//
//   - plan leaves out cancelled and zero-length occurrences: the oracle runs
//     with --drop-cancelled and its zero-length occurrences are dropped;
//   - plan reads floating and all-day values in schedule.timezone (UTC here),
//     the oracle writes them "as if UTC": they line up. With X-WR-TIMEZONE,
//     plan reads them in that zone (docs/configuration.md), so the oracle's wall clock
//     is read in it too (-raw turns this off);
//   - a TZID nobody can resolve is schedule.timezone for plan; the oracle
//     gets the same zone with --default-tz.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "crosscheck:", err)
		os.Exit(1)
	}
}

type options struct {
	calpresence string // the calpresence binary
	oracle      string // directory of expand.mjs, with node_modules
	corpus      string // directory holding <library>/<file>.ics
	node        string
	defaultTZ   string // the oracle's --default-tz: the config's schedule.timezone
	verbose     bool
	raw         bool // do not read the oracle's floating/all-day values in X-WR-TIMEZONE
	maxDiff     int
	from, to    time.Time // fixed window; zero: derived per file
	jobs        int
	timeout     time.Duration
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("crosscheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var from, to string
	fs.StringVar(&o.calpresence, "calpresence", "", "calpresence binary (required)")
	fs.StringVar(&o.oracle, "oracle", "", "oracle directory with expand.mjs and node_modules (required)")
	fs.StringVar(&o.corpus, "corpus", "", "corpus directory: <library>/<file>.ics (required)")
	fs.StringVar(&o.node, "node", "node", "node binary")
	fs.StringVar(&o.defaultTZ, "default-tz", "UTC", "the oracle's zone for TZIDs it cannot resolve, as schedule.timezone is calpresence's (empty: the oracle's own fallbacks)")
	fs.BoolVar(&o.verbose, "v", false, "print the occurrences only one side has")
	fs.BoolVar(&o.raw, "raw", false, "compare the oracle's floating and all-day values as UTC even when the file has X-WR-TIMEZONE")
	fs.IntVar(&o.maxDiff, "max-diff", 20, "with -v, at most this many occurrences per side and file")
	fs.StringVar(&from, "from", "", "fixed window start, RFC 3339 (default: derived per file)")
	fs.StringVar(&to, "to", "", "fixed window end, RFC 3339 (with -from)")
	fs.IntVar(&o.jobs, "j", 2, "files checked in parallel")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "limit for one side on one file")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: crosscheck -calpresence BIN -oracle DIR -corpus DIR [-v] [-from T -to T] [FILE...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.calpresence == "" || o.oracle == "" || o.corpus == "" {
		fs.Usage()
		return errors.New("-calpresence, -oracle and -corpus are required")
	}
	if (from == "") != (to == "") {
		return errors.New("-from and -to go together")
	}
	if from != "" {
		var err error
		if o.from, err = time.Parse(time.RFC3339, from); err != nil {
			return fmt.Errorf("-from: %w", err)
		}
		if o.to, err = time.Parse(time.RFC3339, to); err != nil {
			return fmt.Errorf("-to: %w", err)
		}
	}
	files := fs.Args()
	if len(files) == 0 {
		var err error
		if files, err = filepath.Glob(filepath.Join(o.corpus, "*", "*.ics")); err != nil {
			return err
		}
		if len(files) == 0 {
			return fmt.Errorf("no .ics files under %s", o.corpus)
		}
	}
	slices.Sort(files)
	tmp, err := os.MkdirTemp("", "crosscheck-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	results := make([]result, len(files))
	sem := make(chan struct{}, max(o.jobs, 1))
	var wg sync.WaitGroup
	for i, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i] = check(context.Background(), &o, tmp, i, f)
		}()
	}
	wg.Wait()

	var agree, differ, failed int
	for _, r := range results {
		name, _ := filepath.Rel(o.corpus, r.file)
		win := r.from.Format("2006-01-02") + ".." + r.to.Format("2006-01-02")
		if r.xwr != nil {
			win += ", floating/all-day in X-WR-TIMEZONE " + r.xwr.String()
		}
		switch {
		case r.err != nil:
			failed++
			fmt.Fprintf(stdout, "%-70s ERROR %v\n", name, r.err)
			continue
		case len(r.onlyOurs) == 0 && len(r.onlyOracle) == 0:
			agree++
			fmt.Fprintf(stdout, "%-70s agree (%d occurrences, %s)\n", name, r.common, win)
		default:
			differ++
			fmt.Fprintf(stdout, "%-70s DIFFER (+%d only calpresence, -%d only oracle; %d common, %s)\n",
				name, len(r.onlyOurs), len(r.onlyOracle), r.common, win)
		}
		if r.planErr != "" {
			fmt.Fprintf(stdout, "    calpresence: %s\n", r.planErr)
		}
		if o.verbose {
			for _, side := range []struct {
				sign string
				occs []occ
			}{{"+", r.onlyOurs}, {"-", r.onlyOracle}} {
				for j, x := range side.occs {
					if j == o.maxDiff {
						fmt.Fprintf(stdout, "    %s ... %d more\n", side.sign, len(side.occs)-j)
						break
					}
					fmt.Fprintf(stdout, "    %s %s %s..%s\n", side.sign, x.uid, x.start, x.end)
				}
			}
		}
	}
	fmt.Fprintf(stdout, "%d agree, %d differ", agree, differ)
	if failed > 0 {
		fmt.Fprintf(stdout, ", %d could not be compared", failed)
	}
	fmt.Fprintln(stdout)
	return nil
}

// occ is what both sides are reduced to.
type occ struct{ uid, start, end string }

func (a occ) compare(b occ) int {
	return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.uid, b.uid), cmp.Compare(a.end, b.end))
}

type result struct {
	file                 string
	xwr                  *time.Location // the oracle's floating values were read in it
	from, to             time.Time
	common               int
	onlyOurs, onlyOracle []occ
	planErr              string // what plan said on stderr when it exited 1
	err                  error  // the file could not be compared
}

func check(ctx context.Context, o *options, tmp string, i int, file string) result {
	r := result{file: file, from: o.from, to: o.to}
	abs, err := filepath.Abs(file)
	if err != nil {
		r.err = err
		return r
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		r.err = err
		return r
	}
	if r.from.IsZero() {
		r.from, r.to = window(data)
	}
	if !o.raw {
		// docs/configuration.md reads floating and all-day values in X-WR-TIMEZONE;
		// the oracle prints them as if UTC. Its wall clock is the same
		// either way, so read that wall clock in the zone here.
		if name := xwrTimezone(data); name != "" {
			if loc, err := time.LoadLocation(name); err == nil && loc != time.UTC {
				r.xwr = loc
			}
		}
	}
	from, to := r.from.Format(time.RFC3339), r.to.Format(time.RFC3339)

	ours, planErr, err := runPlan(ctx, o, tmp, i, abs, from, to)
	if err != nil {
		r.err = fmt.Errorf("calpresence: %w", err)
		return r
	}
	r.planErr = planErr
	theirs, err := runOracle(ctx, o, abs, from, to, r.xwr)
	if err != nil {
		r.err = fmt.Errorf("oracle: %w", err)
		return r
	}
	r.common, r.onlyOurs, r.onlyOracle = diff(ours, theirs)
	return r
}

// diff compares two multisets of occurrences.
func diff(a, b []occ) (common int, onlyA, onlyB []occ) {
	count := map[occ]int{}
	for _, x := range a {
		count[x]++
	}
	for _, x := range b {
		count[x]--
	}
	for x, n := range count {
		for ; n > 0; n-- {
			onlyA = append(onlyA, x)
		}
		for ; n < 0; n++ {
			onlyB = append(onlyB, x)
		}
	}
	slices.SortFunc(onlyA, occ.compare)
	slices.SortFunc(onlyB, occ.compare)
	return len(a) - len(onlyA), onlyA, onlyB
}

// maxOccurrences is the config's schedule.max_occurrences: far more than
// any series in the corpus produces in its window, so the cap never cuts.
const maxOccurrences = 200000

func runPlan(ctx context.Context, o *options, tmp string, i int, file, from, to string) ([]occ, string, error) {
	cfg := filepath.Join(tmp, fmt.Sprintf("config-%d.yaml", i))
	u := "file://" + filepath.ToSlash(file)
	y := fmt.Sprintf(`graph: {dry_run: true}
server: {listen: ""}
state: {path: %q}
schedule: {timezone: UTC, max_occurrences: %d}
sources:
  - name: corpus
    url: %q
    users: [x@example.com]
    skip: {all_day: false, transparent: false, tentative: false, declined: false}
`, filepath.Join(tmp, fmt.Sprintf("state-%d.db", i)), maxOccurrences, u)
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.calpresence, "plan", "-config", cfg, "-from", from, "-to", to, "-output", "json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	planErr := ""
	if err != nil {
		// Exit 1 names a feed that could not be read or parsed; anything
		// else (usage, config, a crash) means this run is broken.
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			return nil, "", fmt.Errorf("%v: %s", err, lastLine(stderr.String()))
		}
		planErr = lastLine(stderr.String())
	}
	var out []occ
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct{ UID, Start, End string }
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, "", fmt.Errorf("plan output %q: %w", sc.Text(), err)
		}
		out = append(out, occ{l.UID, normTime(l.Start), normTime(l.End)})
	}
	return out, planErr, sc.Err()
}

// runOracle runs the oracle over the window. With xwr, floating and all-day
// occurrences are moved from "as if UTC" to xwr; the oracle then runs over
// a window widened by a day on each side, so that the window test is
// applied to the moved instants.
func runOracle(ctx context.Context, o *options, file, from, to string, xwr *time.Location) ([]occ, error) {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	wFrom, wTo := from, to
	var lo, hi time.Time
	if xwr != nil {
		lo, _ = time.Parse(time.RFC3339, from)
		hi, _ = time.Parse(time.RFC3339, to)
		wFrom = lo.Add(-26 * time.Hour).Format(time.RFC3339)
		wTo = hi.Add(26 * time.Hour).Format(time.RFC3339)
	}
	args := []string{filepath.Join(o.oracle, "expand.mjs"), file, wFrom, wTo, "--drop-cancelled"}
	if o.defaultTZ != "" {
		args = append(args, "--default-tz="+o.defaultTZ)
	}
	cmd := exec.CommandContext(ctx, o.node, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%v: %s", err, lastLine(stderr.String()))
	}
	var out []occ
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l struct {
			UID        *string `json:"uid"`
			StartUTC   string  `json:"start_utc"`
			EndUTC     string  `json:"end_utc"`
			StartLocal string  `json:"start_local"`
			EndLocal   string  `json:"end_local"`
			AllDay     bool    `json:"all_day"`
			Floating   bool    `json:"floating"`
			Cancelled  bool    `json:"cancelled"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("output %q: %w", sc.Text(), err)
		}
		x := occ{start: normTime(l.StartUTC), end: normTime(l.EndUTC)}
		if l.UID != nil {
			x.uid = *l.UID
		}
		if xwr != nil {
			if l.AllDay || l.Floating {
				s, err1 := inZone(l.StartLocal, xwr)
				e, err2 := inZone(l.EndLocal, xwr)
				if err := errors.Join(err1, err2); err != nil {
					return nil, fmt.Errorf("output %q: %w", sc.Text(), err)
				}
				x.start, x.end = s.Format(time.RFC3339), e.Format(time.RFC3339)
			}
			if s, _ := time.Parse(time.RFC3339, x.start); !s.Before(hi) {
				continue
			}
			if e, _ := time.Parse(time.RFC3339, x.end); !e.After(lo) {
				continue
			}
		}
		// The oracle tests the window as if an end before the start were
		// the start (README), but prints the end as it found it.
		if x.end < x.start {
			x.end = x.start
		}
		// plan never shows a cancelled or a zero-length occurrence
		// (docs/configuration.md).
		if l.Cancelled || x.start == x.end {
			continue
		}
		out = append(out, x)
	}
	return out, sc.Err()
}

// inZone reads a wall clock the oracle printed (2006-01-02 or
// 2006-01-02T15:04:05) in loc, the way RFC 5545 3.3.5 resolves DST: a
// repeated local time is its first occurrence, a skipped one takes the
// offset from before the gap. (time.Date leaves both unspecified.)
func inZone(wall string, loc *time.Location) (time.Time, error) {
	layout := "2006-01-02T15:04:05"
	if len(wall) == len("2006-01-02") {
		layout = "2006-01-02"
	}
	w, err := time.Parse(layout, wall)
	if err != nil {
		return time.Time{}, err
	}
	offsetAt := func(t time.Time) time.Duration {
		_, off := t.In(loc).Zone()
		return time.Duration(off) * time.Second
	}
	before := offsetAt(w.Add(-24 * time.Hour))
	best, found := time.Duration(0), false
	for _, off := range []time.Duration{before, offsetAt(w), offsetAt(w.Add(24 * time.Hour))} {
		if offsetAt(w.Add(-off)) == off && (!found || off > best) {
			best, found = off, true
		}
	}
	if !found {
		best = before
	}
	return w.Add(-best).UTC(), nil
}

// xwrTimezone returns the value of the first X-WR-TIMEZONE property.
func xwrTimezone(data []byte) string {
	for _, line := range strings.Split(unfold(string(data)), "\n") {
		if len(line) > 13 && strings.EqualFold(line[:13], "X-WR-TIMEZONE") && (line[13] == ':' || line[13] == ';') {
			if i := strings.IndexByte(line, ':'); i >= 0 {
				return strings.TrimSpace(line[i+1:])
			}
		}
	}
	return ""
}

func unfold(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	s = strings.ReplaceAll(s, "\n ", "")
	return strings.ReplaceAll(s, "\n\t", "")
}

// normTime writes an RFC 3339 instant as UTC without fractions, so that
// "…T10:00:00.000Z" and "…T10:00:00Z" compare equal.
func normTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format(time.RFC3339)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

var dateRE = regexp.MustCompile(`(?:^|[^0-9])((?:19|20)[0-9]{2})([01][0-9])([0-3][0-9])(?:[^0-9]|$)`)

// window derives a window that covers a file's events: from two days before
// the earliest date written in a VEVENT's DTSTART, DTEND, RDATE,
// RECURRENCE-ID or RRULE UNTIL, to two years after the latest one; open
// series are cut there (identically on both sides). Bounded to 1900..2100,
// the years the oracle has zone data for.
func window(data []byte) (from, to time.Time) {
	text := unfold(string(data))
	depth := 0 // inside a VEVENT (not its VALARMs)
	var lo, hi time.Time
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		up := strings.ToUpper(line)
		switch {
		case up == "BEGIN:VEVENT":
			depth = 1
			continue
		case up == "END:VEVENT":
			depth = 0
			continue
		case strings.HasPrefix(up, "BEGIN:") && depth > 0:
			depth++
			continue
		case strings.HasPrefix(up, "END:") && depth > 1:
			depth--
			continue
		}
		if depth != 1 {
			continue
		}
		name := up
		if i := strings.IndexAny(name, ";:"); i >= 0 {
			name = name[:i]
		}
		switch name {
		case "DTSTART", "DTEND", "RDATE", "RECURRENCE-ID", "RRULE":
		default:
			continue
		}
		v := line
		if i := strings.IndexByte(v, ':'); i >= 0 && name != "RRULE" {
			v = v[i+1:]
		}
		for _, m := range dateRE.FindAllStringSubmatch(v, -1) {
			d, err := time.Parse("20060102", m[1]+m[2]+m[3])
			if err != nil {
				continue // 20171032: not a date
			}
			if lo.IsZero() || d.Before(lo) {
				lo = d
			}
			if d.After(hi) {
				hi = d
			}
		}
	}
	if lo.IsZero() {
		return time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	from, to = lo.AddDate(0, 0, -2), hi.AddDate(2, 0, 0)
	from = maxTime(from, time.Date(1900, 1, 2, 0, 0, 0, 0, time.UTC))
	to = minTime(to, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
	return from, to
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
