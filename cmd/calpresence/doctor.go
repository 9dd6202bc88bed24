package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/calpresence/calpresence/app"
)

// cmdDoctor checks a deployment end to end (app.Doctor) and prints one line
// per check: ✓ passed, ✗ failed (with what to do), – not checked. It exits
// 1 naming the checks that failed, 2 on a usage or configuration error.
func cmdDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := newFlagSet("doctor", "[-config FILE]", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	// The files the configuration names (secrets, certificates, CA) are
	// the configuration's: one that cannot be read is exit 2, as with
	// validate and run.
	if err := cfg.CheckFiles(); err != nil {
		return usageError{err}
	}
	var failed []string
	err = app.Doctor(ctx, cfg, app.DoctorOptions{Version: versionString()}, func(c app.Check) {
		fmt.Fprintln(stdout, c)
		if c.Status == app.CheckFailed {
			failed = append(failed, c.Name)
		}
	})
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d %s failed: %s", len(failed), plural(len(failed), "check", "checks"), strings.Join(failed, ", "))
	}
	return nil
}
