// Command calpresence keeps Microsoft Teams presence in step with meetings
// held elsewhere (Zoom, Webex, any ICS feed). See README.md.
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
	"strings"
	"syscall"

	"github.com/calpresence/calpresence/app"
	"github.com/calpresence/calpresence/config"
)

// Exit statuses (README.md).
const (
	exitOK     = 0
	exitFailed = 1 // the work failed: a feed or Graph error, named
	exitUsage  = 2 // usage or configuration error
)

// usageError marks an error as a usage or configuration problem (exit 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

const usage = `calpresence keeps Microsoft Teams presence true during meetings held elsewhere.

Usage:
  calpresence run      [-config FILE]                  the daemon
  calpresence resync   [-config FILE] [-source NAME]... [-user USER]... [-dry-run]
  calpresence plan     [-config FILE] [-from T] [-to T] [-source NAME]... [-user USER]... [-output table|json]
  calpresence validate [-config FILE]
  calpresence doctor   [-config FILE]                  live checks: Graph roles, users, feeds, read-back, store
  calpresence clear    [-config FILE] (-user USER... | -all)
  calpresence reload   [-config FILE]                  the daemon reads its configuration again
  calpresence state    check|reset [-config FILE]      inspect or move aside a damaged state file
  calpresence version

-config defaults to $CALPRESENCE_CONFIG, then /etc/calpresence/config.yaml.
Exit status: 0 ok, 1 the work failed, 2 usage or configuration error.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches a subcommand and turns its error into an exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"run":      cmdRun,
		"resync":   cmdResync,
		"plan":     cmdPlan,
		"validate": cmdValidate,
		"doctor":   cmdDoctor,
		"clear":    cmdClear,
		"reload":   cmdReload,
		"state":    cmdState,
		"version":  cmdVersion,
	}
	name := args[0]
	if name == "-h" || name == "-help" || name == "--help" || name == "help" {
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "calpresence: unknown command %q\n\n%s", name, usage)
		return exitUsage
	}
	err := cmd(ctx, args[1:], stdout, stderr)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(usageError)) || errors.As(err, new(*app.ConfigError)):
		printError(stderr, name, args[1:], err, exitUsage)
		return exitUsage
	default:
		printError(stderr, name, args[1:], err, exitFailed)
		return exitFailed
	}
}

// loggingCommands are the subcommands whose output is logs (-log-format).
var loggingCommands = map[string]bool{"run": true, "resync": true, "clear": true}

// printError prints the error that ends a command. A command that logs in
// JSON (-log-format json, or auto with stderr not a terminal: a container)
// first gets it as one JSON log line too, so that a log pipeline sees why
// the process stopped; the plain text follows for people.
func printError(stderr io.Writer, name string, args []string, err error, code int) {
	if loggingCommands[name] {
		format := flagValue(args, "log-format")
		if format == "json" || (format == "" || format == "auto") && !isTerminal(stderr) {
			slog.New(slog.NewJSONHandler(stderr, nil)).Error("calpresence "+name+" failed",
				"err", err.Error(), "exit_code", code)
		}
	}
	fmt.Fprintf(stderr, "calpresence %s: %v\n", name, err)
}

// flagValue returns the value of flag name in args (-name v, -name=v, or
// with two dashes), or "" when it is not there.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--" || !strings.HasPrefix(a, "-") {
			continue
		}
		n, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if n != name {
			continue
		}
		if hasValue {
			return v
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// newFlagSet returns a FlagSet that reports errors instead of exiting, with
// the -config flag every subcommand takes.
func newFlagSet(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: calpresence %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	cfgPath := fs.String("config", defaultConfigPath(), "configuration `file`")
	return fs, cfgPath
}

func defaultConfigPath() string {
	if p := os.Getenv(config.PathEnv); p != "" {
		return p
	}
	return config.DefaultPath
}

// parseFlags parses args and rejects stray arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
