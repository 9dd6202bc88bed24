package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/calpresence/calpresence/state"
	"github.com/calpresence/calpresence/state/bolt"
)

// stateEnv is a configuration whose state.path is a file in a temporary
// folder. The configuration is not a dry run, so run opens the file.
type stateEnv struct {
	dir, cfgPath, dbPath string
}

func newStateEnv(t *testing.T) stateEnv {
	t.Helper()
	dir := t.TempDir()
	e := stateEnv{dir: dir, cfgPath: filepath.Join(dir, "config.yaml"), dbPath: filepath.Join(dir, "state.db")}
	cfg := `graph:
  tenant_id: 00000000-0000-0000-0000-000000000001
  client_id: 00000000-0000-0000-0000-000000000002
  client_secret: not-used
state:
  path: ` + e.dbPath + `
server:
  listen: ""
sources:
  - name: zoom
    url: file:feed.ics
    users: [alice@contoso.com]
`
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// write fills the state file with a session and a user id, and with raw
// records (bucket, key, value) written past the encoders.
func (e stateEnv) write(t *testing.T, raw ...[3]string) {
	t.Helper()
	s, err := bolt.Open(e.dbPath, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutSession(t.Context(), state.Session{UserID: "id-1", UPN: "alice@contoso.com", Availability: "Busy", Activity: "InACall"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIdentities(t.Context(), []state.Identity{{Address: "alice@contoso.com", ID: "id-1"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(e.dbPath, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, r := range raw {
			if err := tx.Bucket([]byte(r[0])).Put([]byte(r[1]), []byte(r[2])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestStateCheckClean(t *testing.T) {
	e := newStateEnv(t)
	e.write(t)
	stdout, stderr, code := runCLI(t, nil, "state", "check", "-config", e.cfgPath)
	if code != 0 {
		t.Fatalf("state check on a clean file: exit %d; want 0\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, want := range []string{"state file " + e.dbPath, "sessions    1 good", "identities  1 good", "pages       ok"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("state check stdout lacks %q:\n%s", want, stdout)
		}
	}
}

func TestStateCheckBadRecords(t *testing.T) {
	e := newStateEnv(t)
	e.write(t, [3]string{"sessions", "bob@contoso.com", "{not json"}, [3]string{"identities", "carol@contoso.com", "[]"})
	stdout, stderr, code := runCLI(t, nil, "state", "check", "-config", e.cfgPath)
	if code != 1 {
		t.Errorf("state check with bad records: exit %d; want 1", code)
	}
	for _, want := range []string{"sessions    1 good, 1 bad", `bad sessions "bob@contoso.com": invalid character`,
		"identities  1 good, 1 bad", `bad identities "carol@contoso.com"`} {
		if !strings.Contains(stdout, want) {
			t.Errorf("state check stdout lacks %q:\n%s", want, stdout)
		}
	}
	if want := "2 records that do not decode: the daemon skips them"; !strings.Contains(stderr, want) || !strings.Contains(stderr, "calpresence state reset -config "+e.cfgPath) {
		t.Errorf("state check stderr = %q; want %q and the reset command", stderr, want)
	}
}

// TestDamagedStateFile: a file that is not a database at all, or a copy
// cut short, stops run with an error naming the file and the way out, and
// state check says the same; neither panics.
func TestDamagedStateFile(t *testing.T) {
	t.Run("garbage", func(t *testing.T) {
		e := newStateEnv(t)
		if err := os.WriteFile(e.dbPath, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		checkDamaged(t, e)
	})
	t.Run("truncated", func(t *testing.T) {
		e := newStateEnv(t)
		s, err := bolt.Open(e.dbPath, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var sessions []state.Session
		for i := range 500 {
			sessions = append(sessions, state.Session{UserID: fmt.Sprintf("id-%d", i), Availability: "Busy", Activity: "InACall"})
		}
		if err := s.PutSessions(t.Context(), sessions); err != nil {
			t.Fatal(err)
		}
		s.Close()
		fi, err := os.Stat(e.dbPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(e.dbPath, fi.Size()/2); err != nil {
			t.Fatal(err)
		}
		checkDamaged(t, e)
	})
}

func checkDamaged(t *testing.T, e stateEnv) {
	t.Helper()
	for _, args := range [][]string{
		{"run", "-config", e.cfgPath, "-log-format", "text"},
		{"state", "check", "-config", e.cfgPath},
	} {
		stdout, stderr, code := runCLI(t, nil, args...)
		if code != 1 {
			t.Errorf("calpresence %v on a damaged state file: exit %d; want 1\nstderr: %s", args, code, stderr)
		}
		for _, want := range []string{e.dbPath, "state file is damaged", "calpresence state reset -config " + e.cfgPath} {
			if !strings.Contains(stderr, want) {
				t.Errorf("calpresence %v stderr lacks %q:\n%s", args, want, stderr)
			}
		}
		if strings.Contains(stdout+stderr, "panic") || strings.Contains(stdout+stderr, "goroutine ") {
			t.Errorf("calpresence %v panicked:\n%s", args, stderr)
		}
	}
}

func TestStateCheckMissingFile(t *testing.T) {
	e := newStateEnv(t)
	stdout, stderr, code := runCLI(t, nil, "state", "check", "-path", e.dbPath)
	if code != 0 || !strings.Contains(stdout, "no state file at "+e.dbPath) {
		t.Errorf("state check with no file: exit %d, stdout %q, stderr %q; want 0 and a note", code, stdout, stderr)
	}
	if _, err := os.Stat(e.dbPath); err == nil {
		t.Errorf("state check created %s", e.dbPath)
	}
}

func TestStateReset(t *testing.T) {
	e := newStateEnv(t)
	if err := os.WriteFile(e.dbPath, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Without -yes and without an answer: nothing happens.
	_, stderr, code := runCLI(t, nil, "state", "reset", "-config", e.cfgPath)
	if code != 1 || !strings.Contains(stderr, "not confirmed") {
		t.Errorf("state reset unanswered: exit %d, stderr %q; want 1 and not confirmed", code, stderr)
	}
	if _, err := os.Stat(e.dbPath); err != nil {
		t.Fatalf("state reset unanswered moved the file: %v", err)
	}

	// Answered yes on stdin.
	cmd := exec.Command(binary, "state", "reset", "-config", e.cfgPath)
	cmd.Stdin = strings.NewReader("y\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("state reset answered y: %v\n%s", err, out)
	}
	moved, _ := filepath.Glob(e.dbPath + ".corrupt-*")
	if len(moved) != 1 || !strings.Contains(string(out), "moved "+e.dbPath+" to "+moved[0]) {
		t.Fatalf("after state reset: moved files %q, output %q; want one %s.corrupt-<time> named in the output", moved, out, e.dbPath)
	}
	if b, err := os.ReadFile(moved[0]); err != nil || string(b) != "garbage" {
		t.Errorf("moved file = %q, %v; want the old content kept", b, err)
	}
	if _, err := os.Stat(e.dbPath); err == nil {
		t.Errorf("%s still exists after state reset", e.dbPath)
	}

	// Nothing left to reset.
	stdout, _, code := runCLI(t, nil, "state", "reset", "-path", e.dbPath, "-yes")
	if code != 0 || !strings.Contains(stdout, "nothing to reset") {
		t.Errorf("state reset with no file: exit %d, stdout %q; want 0 and nothing to reset", code, stdout)
	}
}

// TestStateCommandsWhileDaemonHoldsTheFile: reset refuses while the daemon
// (here, this process) holds the file, and check does not wait forever.
func TestStateCommandsWhileDaemonHoldsTheFile(t *testing.T) {
	e := newStateEnv(t)
	s, err := bolt.Open(e.dbPath, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, args := range [][]string{
		{"state", "reset", "-config", e.cfgPath, "-yes"},
		{"state", "check", "-config", e.cfgPath},
	} {
		_, stderr, code := runCLI(t, nil, args...)
		if code != 1 || !strings.Contains(stderr, "is the daemon running?") || !strings.Contains(stderr, "stop") {
			t.Errorf("calpresence %v while the file is held: exit %d, stderr %q; want 1 and a message to stop the daemon", args, code, stderr)
		}
	}
	if _, err := os.Stat(e.dbPath); err != nil {
		t.Errorf("the held file was moved: %v", err)
	}
	moved, _ := filepath.Glob(e.dbPath + ".corrupt-*")
	if len(moved) != 0 {
		t.Errorf("state reset moved the held file to %q", moved)
	}
}

func TestStateUsage(t *testing.T) {
	e := newStateEnv(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"state"}, "want a subcommand: check or reset"},
		{[]string{"state", "fix"}, `unknown subcommand "fix"`},
		{[]string{"state", "check", "-config", e.cfgPath, "-path", e.dbPath}, "set -config or -path, not both"},
		{[]string{"state", "check", "-config", e.cfgPath, "extra"}, `unexpected argument "extra"`},
		{[]string{"state", "reset", "-config", filepath.Join(e.dir, "nope.yaml")}, "nope.yaml"},
	} {
		stdout, stderr, code := runCLI(t, nil, tt.args...)
		if code != 2 || !strings.Contains(stdout+stderr, tt.want) {
			t.Errorf("calpresence %v: exit %d, output %q; want exit 2 containing %q", tt.args, code, stdout+stderr, tt.want)
		}
	}
}

func TestStateCommandsRefusePostgres(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := "graph:\n  dry_run: true\nstate:\n  driver: postgres\n  dsn: postgres://calpresence:secret-pw@db.example:5432/calpresence\nsources:\n  - name: zoom\n    url: https://zoom.example/feed.ics\n    users: [alice@contoso.com]\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"check", "reset"} {
		_, stderr, code := runCLI(t, nil, "state", cmd, "-config", cfgPath)
		if code != 2 || !strings.Contains(stderr, "state.driver is postgres") || strings.Contains(stderr, "secret-pw") {
			t.Errorf("state %s on a postgres config: exit %d, %s; want exit 2 naming the driver", cmd, code, stderr)
		}
	}
}
