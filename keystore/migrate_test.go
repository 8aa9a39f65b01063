package keystore

import (
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"
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
