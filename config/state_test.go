package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadPostgres(t *testing.T) {
	c, err := loadWith(t, "testdata/valid-postgres.yaml", env(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	// dsn_file is read into dsn; the bbolt path is cleared.
	want := State{Driver: DriverPostgres, DSN: "postgres://calpresence:dsn-secret-0xC0FFEE@db.example:5432/calpresence?sslmode=require"}
	if diff := cmp.Diff(want, c.State); diff != "" {
		t.Errorf("State mismatch (-want +got):\n%s", diff)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() after Load = %v; want nil", err)
	}
	wantSummary := "1 source, 1 user (1 fixed, 0 mapped), state in PostgreSQL at postgres://calpresence:xxxxx@db.example:5432/calpresence?sslmode=require"
	if got := c.Summary(); got != wantSummary {
		t.Errorf("Summary() = %q; want %q", got, wantSummary)
	}

	// A dump is a config again, the password redacted.
	again, err := parse([]byte(c.String()), c.Path, env(nil))
	if err != nil {
		t.Fatalf("Parse(c.String()): %v\n%s", err, c)
	}
	if diff := cmp.Diff(c.Redacted(), again); diff != "" {
		t.Errorf("Parse(c.String()) mismatch (-want +got):\n%s", diff)
	}
}

// TestLoadPostgresEnv: the DSN takes ${VAR} like any value, so the
// password can come from the environment.
func TestLoadPostgresEnv(t *testing.T) {
	data := []byte(`graph: {dry_run: true}
sources: [{name: a, url: "https://x.example/a.ics", users: [u@x.example]}]
state:
  driver: postgres
  dsn: "host=db.example user=calpresence password=${PG_PASSWORD} sslmode=verify-full sslrootcert=testdata/ca.pem"
`)
	c, err := parse(data, "config.yaml", env(map[string]string{"PG_PASSWORD": "env-secret 'quoted'"}))
	if err == nil || strings.Contains(err.Error(), "env-secret") {
		// An unquoted value with a space: pgx reads "'quoted'" as a key.
		t.Errorf("Parse(password with a space, unquoted) = %v; want an error without the password", err)
	}
	c, err = parse(data, "config.yaml", env(map[string]string{"PG_PASSWORD": "env-secret"}))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got, want := string(c.State.DSN), "host=db.example user=calpresence password=env-secret sslmode=verify-full sslrootcert=testdata/ca.pem"; got != want {
		t.Errorf("State.DSN = %q; want %q", got, want)
	}
	if got, want := c.State.DSN.String(), "host=db.example user=calpresence password=xxxxx sslmode=verify-full sslrootcert=testdata/ca.pem"; got != want {
		t.Errorf("State.DSN.String() = %q; want %q", got, want)
	}
}

func TestRedactDSN(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://calpresence:s3cr3t@db:5432/calpresence?sslmode=require", "postgres://calpresence:xxxxx@db:5432/calpresence?sslmode=require"},
		{"postgresql://calpresence:p%40ss%2Fword@db/calpresence", "postgresql://calpresence:xxxxx@db/calpresence"},
		{"postgres://calpresence@db/calpresence", "postgres://calpresence@db/calpresence"},
		{"postgres://db/calpresence?user=x&password=s3cr3t&sslmode=verify-full&sslpassword=k3y", "postgres://db/calpresence?user=x&password=xxxxx&sslmode=verify-full&sslpassword=xxxxx"},
		{"POSTGRES://u:s3cr3t@db/x", "postgres://u:xxxxx@db/x"},
		// Does not parse as a URL: userinfo and query hidden whole.
		{"postgres://u:s3c@r3t@db:notaport/x?password=p", "postgres://xxxxx@db:notaport/x?xxxxx"},
		{"postgres://u:s3cr3t@h1:5432,h2:5432/x", "postgres://u:xxxxx@h1:5432,h2:5432/x"},
		// Keyword/value.
		{"host=db user=calpresence password=s3cr3t dbname=calpresence", "host=db user=calpresence password=xxxxx dbname=calpresence"},
		{"host=db password = 's3 cr\\'3t' sslpassword=k3y", "host=db password = xxxxx sslpassword=xxxxx"},
		{"password=s3cr3t", "password=xxxxx"},
		{"  host=db\tPassword=s3cr3t  ", "  host=db\tPassword=xxxxx  "},
		{"host=db password='unterminated s3cr3t", "host=db password=xxxxx"},
		{"host=db", "host=db"},
		// Words that are no setting may be a password pasted in.
		{"s3cr3t", "xxxxx"},
		{"host=db s3cr3t user=x", "host=db xxxxx user=x"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := RedactDSN(tt.in); got != tt.want {
			t.Errorf("RedactDSN(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// TestDSNErrorsHidePassword: whatever is wrong with a DSN, the error names
// state.dsn and never shows the password.
func TestDSNErrorsHidePassword(t *testing.T) {
	const secret = "pw-0xDEADBEEF"
	for _, dsn := range []string{
		"postgres://calpresence:" + secret + "@db:notaport/calpresence",
		"postgres://calpresence:" + secret + "@db:5432/calpresence?sslmode=nonsense",
		"postgres://calpresence:" + secret + "@db/calpresence?pool_max_conns=many",
		"postgres://calpresence:" + secret + "@db/calpresence?sslmode=verify-full&sslrootcert=testdata/does-not-exist.pem",
		"postgres://calpresence:pw@" + secret + "@db:x/calpresence",
		"postgres://calpresence:" + secret + "%zz@db/calpresence",
		"postgres://db/calpresence?password=" + secret + "&port=x",
		"host=db password=" + secret + " port=x",
		"host=db password='" + secret + "' sslmode=nonsense",
		"host=db password='" + secret,
		"password=" + secret + " ===",
		secret,
	} {
		c := Default()
		c.Graph.DryRun = true
		c.Sources = []Source{{Name: "a", URL: "https://x.example/a.ics", Users: []string{"u@x.example"}}}
		c.State = State{Driver: DriverPostgres, DSN: DSN(dsn)}
		err := c.Validate()
		if err == nil {
			t.Errorf("Validate(dsn %q) = nil; want an error", RedactDSN(dsn))
			continue
		}
		if !strings.Contains(err.Error(), "state.dsn: ") || strings.Contains(err.Error(), secret) {
			t.Errorf("Validate(dsn %q) = %q; want an error naming state.dsn, without the password", RedactDSN(dsn), err)
		}
		t.Logf("%v", err)
	}
}
