package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/keystore"
)

// TestTokenSecretFile: serve creates the SQLite token secret beside the
// database with mode 0600 and reuses it; a file others can read is refused;
// PostgreSQL gets none, and tools never create one.
func TestTokenSecretFile(t *testing.T) {
	d, err := keystore.NewDigester()
	if err != nil {
		t.Fatal(err)
	}
	env := func(vars map[string]string) *environment {
		return &environment{getenv: func(k string) string { return vars[k] }}
	}
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "keygate.db")
	path := filepath.Join(dir, "keygate.db.token-secret")

	if got, err := env(nil).withTokenSecret(dsn, d, false); err != nil || got != d {
		t.Fatalf("a tool created or required a secret: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a tool created %s", path)
	}
	if _, err := env(nil).withTokenSecret(dsn, d, true); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	first, _ := os.ReadFile(path)
	if _, err := env(nil).withTokenSecret(dsn, d, true); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(path); string(again) != string(first) {
		t.Fatal("the secret changed on the second start")
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := env(nil).withTokenSecret(dsn, d, true); err == nil || !strings.Contains(err.Error(), "0600") {
		t.Fatalf("a world-readable secret file was used: %v", err)
	}
	if got, err := env(nil).withTokenSecret("postgres://u:p@h/db", d, true); err != nil || got != d {
		t.Fatalf("postgres without a secret: %v", err)
	}
	if _, err := env(map[string]string{"KEYGATE_TOKEN_SECRET": "short"}).withTokenSecret(dsn, d, true); err == nil {
		t.Fatal("a short KEYGATE_TOKEN_SECRET was accepted")
	}
}
