package keystore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations
var migrations embed.FS

// OpenSQLite opens (creating if needed) the embedded SQLite store at path, in
// WAL mode so that management commands in another process can write while a
// server reads.
func OpenSQLite(ctx context.Context, file string, opts Options) (*Store, error) {
	if file == "" {
		return nil, fmt.Errorf("keystore: sqlite: empty path")
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+file+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("keystore: sqlite: %w", err)
	}
	s := &Store{db: db, format: opts.Format, digester: opts.Digester, now: opts.clock(), writeMu: &sync.Mutex{}}
	if err := migrate(ctx, db, "migrations/sqlite"); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// migrate applies the embedded migrations that the database has not seen,
// each in its own transaction, recording them in schema_migrations. It
// reads migrations/portable (portable SQL, the same for every database) and
// the database's own dir; a version may live in only one of them.
func migrate(ctx context.Context, db *sql.DB, dir string) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)`); err != nil {
		return fmt.Errorf("keystore: migrate: %w", err)
	}
	files := map[int]string{}
	for _, d := range []string{"migrations/portable", dir} {
		entries, err := fs.ReadDir(migrations, d)
		if err != nil {
			return fmt.Errorf("keystore: migrate: %w", err)
		}
		for _, e := range entries {
			num, _, _ := strings.Cut(e.Name(), "_")
			version, err := strconv.Atoi(num)
			if err != nil {
				return fmt.Errorf("keystore: migrate: %s: name must start with a number", e.Name())
			}
			if other, dup := files[version]; dup {
				return fmt.Errorf("keystore: migrate: version %d is both %s and %s", version, other, path.Join(d, e.Name()))
			}
			files[version] = path.Join(d, e.Name())
		}
	}
	versions := make([]int, 0, len(files))
	for v := range files {
		versions = append(versions, v)
	}
	sort.Ints(versions)
	for _, version := range versions {
		body, err := migrations.ReadFile(files[version])
		if err != nil {
			return fmt.Errorf("keystore: migrate: %w", err)
		}
		if err := applyMigration(ctx, db, version, string(body)); err != nil {
			return fmt.Errorf("keystore: migrate %s: %w", files[version], err)
		}
	}
	return nil
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
