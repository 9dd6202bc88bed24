package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/calpresence/calpresence/config"
	"github.com/calpresence/calpresence/graph"
	"github.com/calpresence/calpresence/state/bolt"
)

// Preflight checks what the daemon needs before it starts, without
// contacting anything: the files the configuration names (config
// CheckFiles: credentials, CA, tokens; bolt.CheckWritable: a writable
// state directory, with the fix when it is not), then the Graph client
// built as the daemon builds it (endpoints, the certificate as azidentity
// parses it, PKCS#12 included, the CA pool), never called. validate, run
// and every reload apply it, so a configuration
// validate passes does not fail when run starts or a reload reads it. Its
// errors are configuration errors (ConfigError).
func Preflight(ctx context.Context, cfg *config.Config) error {
	if err := cfg.CheckFiles(); err != nil {
		return &ConfigError{err}
	}
	if !cfg.Graph.DryRun && cfg.State.Path != "" {
		// A dry run opens no state.
		if err := bolt.CheckWritable(cfg.State.Path); err != nil {
			return &ConfigError{fmt.Errorf("%s: state.path: %w", cfg.Path, err)}
		}
	}
	g, err := graph.New(ctx, cfg.Graph, slog.New(slog.DiscardHandler))
	if err != nil {
		return &ConfigError{fmt.Errorf("%s: %w", cfg.Path, err)}
	}
	g.Close()
	return nil
}

// ConfigError is a problem with the configuration (the CLI's exit 2), as
// opposed to the work failing.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// AdminToken reads server.admin_token_file ("" when none is configured).
func AdminToken(cfg *config.Config) (string, error) {
	if cfg.Server.AdminTokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(cfg.Server.AdminTokenFile)
	if err != nil {
		return "", fmt.Errorf("server.admin_token_file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		// An empty token would quietly turn the check off.
		return "", fmt.Errorf("server.admin_token_file: %s is empty", cfg.Server.AdminTokenFile)
	}
	return token, nil
}
