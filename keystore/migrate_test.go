package keystore

import (
	"context"
	"database/sql"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDialectRender(t *testing.T) {
	d := dialect{"serial_pk": "BIGSERIAL PRIMARY KEY", "cols": "a, b"}
	for _, tc := range []struct{ in, want, err string }{
		{in: "CREATE TABLE t (seq {{serial_pk}});", want: "CREATE TABLE t (seq BIGSERIAL PRIMARY KEY);"},
		{in: "({{cols}}) ({{cols}})", want: "(a, b) (a, b)"},
		{in: "no tokens at all", want: "no tokens at all"},
		{in: "x {{serial}} y", err: "unknown dialect token {{serial}}"},
		{in: "x {{}} y", err: "unknown dialect token {{}}"},
		{in: "x {{serial_pk y", err: "unclosed {{"},
	} {
		got, err := d.render(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("render(%q) = %q, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("render(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestMigrationsRenderForEveryDialect keeps the dialects in step with the
// migrations: both define the same tokens, and every embedded migration
// renders on both, leaving no braces behind.
func TestMigrationsRenderForEveryDialect(t *testing.T) {
	if a, b := slices.Sorted(maps.Keys(sqliteDialect)), slices.Sorted(maps.Keys(postgresDialect)); !slices.Equal(a, b) {
		t.Fatalf("dialects define different tokens: sqlite %v, postgres %v", a, b)
	}
	files, versions, err := migrationFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) < 10 {
		t.Fatalf("only %d migrations found", len(versions))
	}
	for _, v := range versions {
		body, err := fs.ReadFile(migrations, files[v])
		if err != nil {
			t.Fatal(err)
		}
		for name, d := range map[string]dialect{"sqlite": sqliteDialect, "postgres": postgresDialect} {
			ddl, err := d.render(string(body))
			if err != nil {
				t.Errorf("%s for %s: %v", files[v], name, err)
			}
			if strings.Contains(ddl, "{{") || strings.Contains(ddl, "}}") {
				t.Errorf("%s for %s: braces left in %q", files[v], name, ddl)
			}
		}
	}
}

// An older database gets exactly the migrations it has not seen, and ends
// with the schema a fresh one gets; a database whose versions are all
// recorded runs none (migrate reads the versions once, before any).
func TestMigrateOlderDatabase(t *testing.T) {
	ctx := context.Background()
	open := func(name string) *sql.DB {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	schema := func(db *sql.DB) []string {
		var out []string
		rows, err := db.QueryContext(ctx, `SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master ORDER BY type, name`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	fresh := open("fresh.db")
	if err := migrate(ctx, fresh, sqliteDialect); err != nil {
		t.Fatal(err)
	}
	files, versions, err := migrationFiles()
	if err != nil {
		t.Fatal(err)
	}
	older := open("older.db")
	if _, err := older.ExecContext(ctx, `CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions[:len(versions)-3] {
		body, err := fs.ReadFile(migrations, files[v])
		if err != nil {
			t.Fatal(err)
		}
		ddl, err := sqliteDialect.render(string(body))
		if err != nil {
			t.Fatal(err)
		}
		if err := applyMigration(ctx, older, v, ddl); err != nil {
			t.Fatalf("%s: %v", files[v], err)
		}
	}
	if err := migrate(ctx, older, sqliteDialect); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(schema(fresh), schema(older)); diff != "" {
		t.Fatalf("older database migrated to a different schema (-fresh +older):\n%s", diff)
	}
	var n int
	if err := older.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(versions) {
		t.Fatalf("%d versions recorded (%v), want %d", n, err, len(versions))
	}

	recorded := open("recorded.db")
	if _, err := recorded.ExecContext(ctx, `CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	for _, v := range versions {
		if _, err := recorded.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := migrate(ctx, recorded, sqliteDialect); err != nil {
		t.Fatal(err)
	}
	if got := schema(recorded); len(got) != 2 { // schema_migrations and its key's index
		t.Fatalf("migrations ran on a database that recorded them all: %v", got)
	}
}
