package pg

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema is versioned: migrations/NNNN_name.sql, numbered from 1
// without gaps, each applied once, in order, in a transaction of its own,
// and recorded in calpresence_migrations. A migration, once released, is
// never edited: a change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrateLockKey is the advisory lock (pg_advisory_xact_lock) every
// migration transaction takes first, so that replicas starting together
// apply each migration once, one after the other. It is fixed for ever
// ("calpmigr" in ASCII); other advisory locks of calpresence (the leader's)
// must use other keys.
const migrateLockKey int64 = 0x63616c706d696772

// versionTable records the migrations applied, one row each.
const versionTable = "calpresence_migrations"

// migration is one numbered SQL file.
type migration struct {
	version int
	name    string // the file name, e.g. 0001_initial.sql
	sql     string
}

var migrationName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the migrations in dir of fsys, in order, and checks
// that they are numbered 1, 2, 3… with no gap or repeat.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries { // sorted by name
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration %s: want a name like 0002_what_it_does.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v != len(ms)+1 {
			return nil, fmt.Errorf("migration %s: want number %04d next", e.Name(), len(ms)+1)
		}
		data, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(data)})
	}
	return ms, nil
}

// migrations are the binary's own, from migrations/.
var migrations, migrationsErr = loadMigrations(migrationFiles, "migrations")

// SchemaVersion is the schema this binary writes: the number of its last
// migration. Open refuses a database at a newer version.
func SchemaVersion() int { return len(migrations) }

// NewerSchemaError reports a database migrated by a newer release than
// this binary: it would misread it, so Open refuses it.
type NewerSchemaError struct {
	Database, Binary int // the schema versions
}

func (e *NewerSchemaError) Error() string {
	return fmt.Sprintf("the database is at schema version %d, newer than this binary's %d: "+
		"upgrade calpresence to the release that migrated it (or a later one)", e.Database, e.Binary)
}

// migrate brings the database to the last of ms, one migration per
// transaction. Each transaction first takes the advisory lock, then reads
// the version afresh: a replica that waited for the lock finds the
// migration applied by the one that held it and goes on from there.
func migrate(ctx context.Context, pool *pgxpool.Pool, ms []migration) error {
	for {
		done, err := migrateStep(ctx, pool, ms)
		if err != nil || done {
			return err
		}
	}
}

// migrateStep applies the first migration the database lacks, or reports
// done when it lacks none.
func migrateStep(ctx context.Context, pool *pgxpool.Pool, ms []migration) (done bool, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		current, err := schemaVersion(ctx, tx)
		if err != nil {
			return err
		}
		if current > len(ms) {
			return &NewerSchemaError{Database: current, Binary: len(ms)}
		}
		if current == len(ms) {
			done = true
			return nil
		}
		m := ms[current]
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+versionTable+" (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			return fmt.Errorf("migration %s: record it: %w", m.name, err)
		}
		return nil
	})
	return done, err
}

// schemaVersion returns the last migration applied, creating the table
// that records them if it is not there (0: none). It creates it only when
// missing, so that a role without CREATE can use a migrated database.
func schemaVersion(ctx context.Context, tx pgx.Tx) (int, error) {
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", versionTable).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read the schema version: %w", err)
	}
	if !exists {
		_, err := tx.Exec(ctx, `CREATE TABLE `+versionTable+` (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`)
		if err != nil {
			return 0, fmt.Errorf("create %s: %w", versionTable, err)
		}
		return 0, nil
	}
	var v int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+versionTable).Scan(&v); err != nil {
		return 0, fmt.Errorf("read the schema version: %w", err)
	}
	return v, nil
}
