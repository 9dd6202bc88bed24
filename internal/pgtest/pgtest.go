// Package pgtest gives tests a real PostgreSQL database of their own.
//
// CALPRESENCE_TEST_POSTGRES_DSN names a server and a role allowed to create
// databases (.ci/run starts the machine's PostgreSQL and sets it). Each call
// of DB creates a fresh database, so tests are isolated from each other,
// advisory locks included, and drops it when the test ends.
//
// Without the variable a test skips with a message saying what is missing;
// in CI (CI set) it fails instead, so a missing server never passes quietly.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN is the environment variable naming the test server.
const EnvDSN = "CALPRESENCE_TEST_POSTGRES_DSN"

// ServerDSN returns the DSN from EnvDSN, or skips (fails in CI) without it.
func ServerDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn != "" {
		return dsn
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not set with CI=%q: .ci/run starts PostgreSQL and sets it", EnvDSN, os.Getenv("CI"))
	}
	t.Skipf("no PostgreSQL for this test: set %s (e.g. postgres://calpresence:calpresence@127.0.0.1:5432/postgres?sslmode=disable, a role with CREATEDB); .ci/run does", EnvDSN)
	return ""
}

// DB creates a fresh database on the test server and returns its DSN. The
// database is dropped when the test ends (connections still open to it are
// terminated).
func DB(t testing.TB) string {
	t.Helper()
	server := ServerDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		t.Fatalf("pgtest: connect to %s: %v", redact(server), err)
	}
	defer admin.Close(context.Background())
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "calpresence_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, server)
		if err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(server)
	if err != nil {
		t.Fatalf("pgtest: %s is not a URL DSN: %v", EnvDSN, err)
	}
	u.Path = "/" + name
	return u.String()
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	return u.Redacted()
}
