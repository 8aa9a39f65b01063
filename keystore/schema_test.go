package keystore_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/keystore"
)

// TestSchemasAgree migrates a SQLite and a PostgreSQL store and compares
// what the queries rely on: every table's columns and their nullability,
// and every index's columns, order and uniqueness. The migrations were once
// written twice (one copy per database) and had drifted; now one file serves
// both with a few dialect tokens (migrate.go), and this keeps them honest.
func TestSchemasAgree(t *testing.T) {
	pg := pgtest.NewDatabase(t, os.Getenv)
	ctx := context.Background()
	lite, err := keystore.Open(ctx, "sqlite:"+t.TempDir()+"/k.db", keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer lite.Close()
	post, err := keystore.Open(ctx, pg, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer post.Close()

	liteSchema := schemaOf(t, lite.DB(),
		`SELECT m.name, p.name, p."notnull" OR p.pk > 0 FROM sqlite_master m JOIN pragma_table_info(m.name) p
		 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`,
		`SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL`)
	pgSchema := schemaOf(t, post.DB(),
		`SELECT table_name, column_name, is_nullable = 'NO' FROM information_schema.columns WHERE table_schema = current_schema()`,
		`SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x
		 JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
		 JOIN pg_namespace n ON n.oid = t.relnamespace
		 WHERE n.nspname = current_schema() AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)`)
	if diff := cmp.Diff(liteSchema, pgSchema); diff != "" {
		t.Errorf("SQLite and PostgreSQL schemas differ (-sqlite +postgres):\n%s", diff)
	}
	if len(liteSchema) < 5 {
		t.Errorf("schema too small to be the store's: %v", liteSchema)
	}
}

// indexDef reads "CREATE [UNIQUE] INDEX name ON table (cols)" in either
// database's spelling.
var indexDef = regexp.MustCompile(`(?i)^CREATE (UNIQUE )?INDEX \S+ ON (?:\S+\.)?(\S+)(?: USING \w+)? \((.*)\)(?: WHERE (.*))?$`)

// schemaOf lists "table.column NOT NULL|NULL" and "index name: [UNIQUE]
// table (columns) [WHERE …]" lines, sorted.
func schemaOf(t *testing.T, db *sql.DB, columns, indexes string) []string {
	t.Helper()
	var out []string
	rows, err := db.Query(columns)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var table, column string
		var notNull bool
		if err := rows.Scan(&table, &column, &notNull); err != nil {
			t.Fatal(err)
		}
		if table == "schema_migrations" {
			continue
		}
		out = append(out, fmt.Sprintf("column %s.%s not null=%t", table, column, notNull))
	}
	rows.Close()
	rows, err = db.Query(indexes)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			t.Fatal(err)
		}
		m := indexDef.FindStringSubmatch(strings.Join(strings.Fields(def), " "))
		if m == nil {
			t.Fatalf("index %s: unexpected definition %q", name, def)
		}
		cols := strings.ToLower(strings.ReplaceAll(m[3], " ASC", ""))
		where := strings.Trim(strings.ToLower(m[4]), "()")
		out = append(out, fmt.Sprintf("index %s: unique=%t %s (%s) where %s", name, m[1] != "", strings.ToLower(m[2]), cols, where))
	}
	slices.Sort(out)
	return out
}
