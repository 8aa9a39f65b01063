package keystore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

//go:embed migrations/portable
var migrations embed.FS

// migrationDir holds every migration, written once for both databases.
const migrationDir = "migrations/portable"

// A dialect is the few spellings in which SQLite's and PostgreSQL's DDL
// differ. The token rule: a migration names such a spelling as {{token}},
// and migrate replaces it with the database's own before running the file.
// A token the dialect does not define, or a "{{" never closed, fails the
// migration, so a typo stops the start instead of giving one database a
// different schema.
// Both dialects define the same tokens (migrate_test.go checks it). Add a
// token only for a real difference in spelling: everything else is one text.
type dialect map[string]string

var (
	sqliteDialect = dialect{
		// A key that numbers rows in insert order: change log, audit, outbox.
		"serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
		// 0001 once indexed keys by site only on SQLite; 0020 replaced the
		// index. Kept so that each database runs the DDL it always ran.
		"init_keys_site_columns": "site_id",
	}
	postgresDialect = dialect{
		"serial_pk":              "BIGSERIAL PRIMARY KEY",
		"init_keys_site_columns": "site_id, created_at DESC, id DESC",
	}
)

// render replaces every {{token}} in body with d's spelling of it.
func (d dialect) render(body string) (string, error) {
	var b strings.Builder
	for {
		before, after, found := strings.Cut(body, "{{")
		b.WriteString(before)
		if !found {
			return b.String(), nil
		}
		token, rest, closed := strings.Cut(after, "}}")
		if !closed {
			return "", fmt.Errorf("unclosed {{")
		}
		spelling, ok := d[token]
		if !ok {
			return "", fmt.Errorf("unknown dialect token {{%s}}", token)
		}
		b.WriteString(spelling)
		body = rest
	}
}

// migrate applies the embedded migrations that the database has not seen, in
// version order, each rendered for dialect d and run in its own transaction
// that records its version in schema_migrations. Only versions are recorded,
// so rewording a migration (or moving it) never re-runs it. The versions
// applied are read once, without a write lock: a migrated database starts
// with that read instead of a write transaction per migration (SQLite's
// BEGIN IMMEDIATE), and a migration not yet applied is checked again inside
// its transaction, where another process may have applied it meanwhile.
func migrate(ctx context.Context, db *sql.DB, d dialect) error {
	if err := createVersionTable(ctx, db); err != nil {
		return fmt.Errorf("keystore: migrate: schema_migrations: %w", err)
	}
	files, versions, err := migrationFiles()
	if err != nil {
		return err
	}
	applied, err := appliedVersions(ctx, db)
	if err != nil {
		return fmt.Errorf("keystore: migrate: applied versions: %w", err)
	}
	for _, version := range versions {
		if applied[version] {
			continue
		}
		body, err := migrations.ReadFile(files[version])
		if err != nil {
			return fmt.Errorf("keystore: migrate: %w", err)
		}
		ddl, err := d.render(string(body))
		if err != nil {
			return fmt.Errorf("keystore: migrate %s: %w", files[version], err)
		}
		if err := applyMigration(ctx, db, version, ddl); err != nil {
			return fmt.Errorf("keystore: migrate %s: %w", files[version], err)
		}
	}
	return nil
}

// migrationFiles maps each version (the number a file's name starts with) to
// its file, and lists the versions in order; a version may have one file only.
func migrationFiles() (map[int]string, []int, error) {
	entries, err := fs.ReadDir(migrations, migrationDir)
	if err != nil {
		return nil, nil, fmt.Errorf("keystore: migrate: %w", err)
	}
	files := map[int]string{}
	versions := make([]int, 0, len(entries))
	for _, e := range entries {
		num, _, _ := strings.Cut(e.Name(), "_")
		version, err := strconv.Atoi(num)
		if err != nil {
			return nil, nil, fmt.Errorf("keystore: migrate: %s: name must start with a number", e.Name())
		}
		if other, dup := files[version]; dup {
			return nil, nil, fmt.Errorf("keystore: migrate: version %d is both %s and %s", version, other, e.Name())
		}
		files[version] = path.Join(migrationDir, e.Name())
		versions = append(versions, version)
	}
	sort.Ints(versions)
	return files, versions, nil
}

// createVersionTable creates schema_migrations if it is missing, in a
// transaction: on SQLite that takes the write lock first (BEGIN IMMEDIATE,
// waiting out another writer), where the statement alone would read and
// then upgrade to a write, which fails at once (SQLITE_BUSY) if another
// process committed in between (replicas starting on a fresh database).
func createVersionTable(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)`); err != nil {
		return err
	}
	return tx.Commit()
}

// appliedVersions is the set of versions schema_migrations records.
func appliedVersions(ctx context.Context, db *sql.DB) (map[int]bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		applied[v] = true
	}
	return applied, rows.Err()
}

func applyMigration(ctx context.Context, db *sql.DB, version int, body string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, body); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version); err != nil {
		return err
	}
	return tx.Commit()
}
