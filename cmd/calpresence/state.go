package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/state/bolt"
)

const stateUsage = `Usage:
  calpresence state check [-config FILE | -path FILE]          report damaged records in the state file
  calpresence state reset [-config FILE | -path FILE] [-yes]   move the state file aside; the next start rebuilds it

Both need the daemon stopped: it holds the file while it runs.
state check exits 0 when every record reads, 1 when some do not (or the file
cannot be read at all), 2 on a usage or configuration error.
`

// cmdState dispatches `calpresence state check|reset`.
func cmdState(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, stateUsage)
		return usagef("want a subcommand: check or reset")
	}
	switch args[0] {
	case "check":
		return cmdStateCheck(ctx, args[1:], stdout, stderr)
	case "reset":
		return cmdStateReset(args[1:], os.Stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, stateUsage)
		return nil
	}
	return usagef("unknown subcommand %q (want check or reset)", args[0])
}

// stateFlagSet is newFlagSet plus -path, which names the file directly so
// that recovery works without the configuration's secrets in the
// environment (a one-off container on the state volume).
func stateFlagSet(name, synopsis string, stderr io.Writer) (flags *flag.FlagSet, statePath func() (string, error)) {
	flags, cfgPath := newFlagSet(name, synopsis, stderr)
	path := flags.String("path", "", "the state `file` (default: state.path from the configuration, which is then not read)")
	return flags, func() (string, error) {
		configSet := false
		flags.Visit(func(f *flag.Flag) { configSet = configSet || f.Name == "config" })
		if *path != "" {
			if configSet {
				return "", usagef("set -config or -path, not both")
			}
			return *path, nil
		}
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			return "", err
		}
		if cfg.State.Driver == config.DriverPostgres {
			// A record that does not decode is reported in the log, and
			// the database has its own tools for the rest.
			return "", usagef("%s: state.driver is postgres: calpresence %s works on a bbolt file (state.path); "+
				"the database's records are checked as the worker reads them (see the runbook, Replicas and failover)", *cfgPath, name)
		}
		return cfg.State.Path, nil
	}
}

func cmdStateCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags, statePath := stateFlagSet("state check", "[-config FILE | -path FILE]", stderr)
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	path, err := statePath()
	if err != nil {
		return err
	}
	r, err := bolt.Check(ctx, path, stateLockTimeout)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(stdout, "no state file at %s: nothing to check (the daemon creates it on start)\n", path)
		return nil
	case errors.Is(err, bolt.ErrLocked):
		return fmt.Errorf("%w: stop it first; state check reads the file only while nothing writes it", err)
	case err != nil:
		return recoveryHint(err, args)
	}
	printReport(stdout, r)
	if r.Clean() {
		return nil
	}
	if len(r.Problems) > 0 {
		return recoveryHint(fmt.Errorf("%s: %w: bbolt found damage below the records", path, bolt.ErrCorrupt), args)
	}
	n := r.BadRecords()
	return fmt.Errorf("%s: %d %s that %s not decode: the daemon skips %s and carries on;\n"+
		"  to start afresh instead, stop the daemon and run: calpresence state reset %s",
		path, n, plural(n, "record", "records"), plural(n, "does", "do"), plural(n, "it", "them"), strings.Join(stateArgs(args), " "))
}

func printReport(w io.Writer, r *bolt.Report) {
	fmt.Fprintf(w, "state file %s\n", r.Path)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, b := range r.Buckets {
		switch {
		case b.Missing:
			fmt.Fprintf(tw, "  %s\tabsent (created on the next start)\n", b.Name)
		case len(b.Bad) == 0:
			fmt.Fprintf(tw, "  %s\t%d good\n", b.Name, b.Good)
		default:
			fmt.Fprintf(tw, "  %s\t%d good, %d bad\n", b.Name, b.Good, len(b.Bad))
		}
		for _, rec := range b.Bad {
			fmt.Fprintf(tw, "  \t  bad %s %q: %v\n", rec.Bucket, rec.Key, rec.Err)
		}
	}
	if len(r.Problems) == 0 && len(r.Buckets) > 0 {
		fmt.Fprintf(tw, "  pages\tok\n")
	}
	for _, p := range r.Problems {
		fmt.Fprintf(tw, "  damage\t%s\n", p)
	}
	tw.Flush()
}

func cmdStateReset(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	flags, statePath := stateFlagSet("state reset", "[-config FILE | -path FILE] [-yes]", stderr)
	yes := flags.Bool("yes", false, "do not ask for confirmation")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	path, err := statePath()
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(stdout, "no state file at %s: nothing to reset\n", path)
		return nil
	}
	if !*yes {
		fmt.Fprintf(stderr, "Move %s aside and start afresh? [y/N] ", path)
		answer, _ := bufio.NewReader(stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return errors.New("not confirmed; nothing changed (-yes skips the question)")
		}
	}
	dest, err := bolt.MoveAside(path, time.Now())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(stdout, "no state file at %s: nothing to reset\n", path)
		return nil
	case errors.Is(err, bolt.ErrLocked):
		return fmt.Errorf("%w: stop the daemon first; it keeps writing to the file it has open", err)
	case err != nil:
		return err
	}
	fmt.Fprintf(stdout, "moved %s to %s\n", path, dest)
	fmt.Fprintln(stdout, "The next start creates a fresh state file and sets everyone who is in a meeting then;")
	fmt.Fprintln(stdout, "presence the old file recorded ends by itself when its lease runs out (presence.max_lease).")
	return nil
}

// recoveryHint adds the way out to an error about a state file that cannot
// be read (bolt.ErrCorrupt). args are the command's own arguments, so the
// hint names the same file.
func recoveryHint(err error, args []string) error {
	if !errors.Is(err, bolt.ErrCorrupt) {
		return err
	}
	return fmt.Errorf("%w\n  the state file cannot be used; stop the daemon and move it aside with:\n"+
		"    calpresence state reset %s\n  (see README, \"State recovery\")", err, strings.Join(stateArgs(args), " "))
}

// stateArgs keeps the flags of args that name the state file (-config,
// -path), for a command line to suggest.
func stateArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || (name != "config" && name != "path") {
			continue
		}
		out = append(out, a)
		if !hasValue && i+1 < len(args) {
			out = append(out, args[i+1])
			i++
		}
	}
	return out
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
