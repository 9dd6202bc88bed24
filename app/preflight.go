package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph"
	"github.com/calpresence/calpresence/state"
)

// preflight checks what the daemon needs before it starts, without
// contacting anything: the files the configuration names (config
// CheckFiles: credentials, CA, tokens; state.CheckWritable: a writable
// state directory, with the fix when it is not), then
// the Graph client built as run builds it (endpoints, the certificate as
// azidentity parses it, PKCS#12 included, the CA pool), never called.
// validate and run both apply it, so a configuration validate passes does
// not fail when run starts; a failure is a configuration error (exit 2).
func preflight(ctx context.Context, cfg *config.Config) error {
	if err := cfg.CheckFiles(); err != nil {
		return usageError{err}
	}
	if !cfg.Graph.DryRun && cfg.State.Path != "" {
		// A dry run opens no state.
		if err := state.CheckWritable(cfg.State.Path); err != nil {
			return usageError{fmt.Errorf("%s: state.path: %w", cfg.Path, err)}
		}
	}
	g, err := graph.New(ctx, cfg.Graph, slog.New(slog.DiscardHandler))
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", cfg.Path, err)}
	}
	g.Close()
	return nil
}
