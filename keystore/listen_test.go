package keystore_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/internal/testclock"
	"github.com/keygate/keygate/keystore"
)

func waitWake(t *testing.T, wake <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatalf("no wake-up for %s", what)
	}
}

// Listen wakes on connect, on every committed write, and again after the
// connection is killed (so the follower re-reads what it may have missed).
func TestListenPostgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t, os.Getenv)
	c := testclock.New(time.Now())
	s, _ := open(t, dsn, c, "pepper-one-0123456789") // signing keys need a secret
	if !s.Notifies() {
		t.Fatal("postgres store does not report notifications")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() { s.Listen(ctx, wake, slog.New(slog.NewTextHandler(io.Discard, nil))); close(done) }()
	waitWake(t, wake, "the first connection")

	if _, err := s.CreateAccount(ctx, keystore.Account{ID: "acme", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	waitWake(t, wake, "a committed write")

	// A rolled-back write notifies nobody.
	if _, err := s.CreateAccount(ctx, keystore.Account{ID: "acme", Plan: "pro"}); err == nil {
		t.Fatal("duplicate accepted")
	}
	select {
	case <-wake:
		t.Fatal("woken by a write that rolled back")
	case <-time.After(300 * time.Millisecond):
	}

	// Nor does a write that appends nothing to the change log (the first
	// signing key): no cache holds what it changed.
	if _, err := s.SigningKeys(ctx, testSchedule); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
		t.Fatal("woken by a write that changed nothing a cache holds")
	case <-time.After(300 * time.Millisecond):
	}

	var killed int
	if err := s.DB().QueryRowContext(ctx, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminating the listener: %d backends, %v", killed, err)
	}
	waitWake(t, wake, "the reconnection")
	if _, err := s.CreateAccount(ctx, keystore.Account{ID: "acme2", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	waitWake(t, wake, "a write after reconnecting")
	cancel()
	<-done
}

func TestListenSQLiteReturns(t *testing.T) {
	s, _ := open(t, "sqlite:"+t.TempDir()+"/k.db", testclock.New(time.Now()))
	if s.Notifies() {
		t.Error("sqlite store claims notifications")
	}
	s.Listen(context.Background(), make(chan struct{}, 1), slog.New(slog.NewTextHandler(io.Discard, nil))) // must return
}
