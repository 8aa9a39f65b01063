package keystore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// openReadsStore is a SQLite store with size pinned connections and
// keys created on one site; it returns the keys' digests and ids.
func openReadsStore(t *testing.T, size, keys int) (s *Store, file string, digests [][]Digest, ids []string) {
	t.Helper()
	ctx := context.Background()
	f, _ := NewFormat("kg")
	d, err := NewDigester([]byte("pepper-one-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(t.TempDir(), "r.db")
	if s, err = OpenSQLite(ctx, file, Options{Format: f, Digester: d}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.stmts.pinned = newPinnedConns(size)
	if _, err := s.CreateAccount(ctx, Account{ID: "acme", Plan: "pro"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSite(ctx, Site{ID: "web", AccountID: "acme", Active: true, Domains: []string{"a.example"}}); err != nil {
		t.Fatal(err)
	}
	for range keys {
		k, secret, err := s.CreateKey(ctx, KeySpec{SiteID: "web", Mode: ModeLive, Entitlements: Entitlements{Scopes: []string{"videos:read"}}})
		if err != nil {
			t.Fatal(err)
		}
		digests, ids = append(digests, d.All(secret.Reveal())), append(ids, k.ID)
	}
	return s, file, digests, ids
}

// Concurrent lookups share two pinned connections, each finding its own
// key; a connection left idle holds no read snapshot, so charges after
// them still checkpoint the log; and reads after Close fail, not hang.
func TestPinnedReadsConcurrent(t *testing.T) {
	s, file, digests, ids := openReadsStore(t, 3, 20) // two for reads
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				n := (g + i) % len(ids)
				f, err := s.LookupKey(ctx, digests[n])
				if err != nil || f.Key.ID != ids[n] || f.Site.ID != "web" || f.Account.ID != "acme" ||
					len(f.Site.Domains) != 1 || len(f.Key.Scopes) != 1 {
					t.Errorf("LookupKey %d: %+v, %v", n, f, err)
					return
				}
				if _, err := s.LookupKeyID(ctx, "key_nope"); !errors.Is(err, ErrNotFound) {
					t.Errorf("LookupKeyID of no key: %v, want ErrNotFound", err)
					return
				}
			}
		})
	}
	wg.Wait()
	at := time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC)
	for range 2500 {
		if _, ok, err := s.ChargeQuota(ctx, "site:web:live", "2026-11", 1, 1<<40, at); err != nil || !ok {
			t.Fatal(ok, err)
		}
	}
	st, err := os.Stat(file + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if frames := st.Size() / (24 + 4096); frames > 1100 {
		t.Errorf("the log holds %d pages after 2,500 charges, want at most 1,100: an idle read connection holds a snapshot", frames)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupKeyID(ctx, ids[0]); err == nil {
		t.Error("LookupKeyID after Close succeeded")
	}
}

// A read waiting for a connection stops waiting when its context ends.
func TestPinnedReadsWaitEndsWithContext(t *testing.T) {
	s, _, _, ids := openReadsStore(t, 1, 1)
	pc := take(t, s) // the only connection, busy
	defer s.stmts.pinned.putRead(pc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.LookupKeyID(ctx, ids[0]); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("LookupKeyID with no free connection: %v, want the context's deadline", err)
	}
}

// A pinned connection closed under the reads is replaced, and the read
// that found it closed still succeeds.
func TestPinnedReadsReplaceClosedConn(t *testing.T) {
	s, _, _, ids := openReadsStore(t, 1, 1)
	ctx := context.Background()
	if _, err := s.LookupKeyID(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	pc := take(t, s)
	if err := pc.conn.Close(); err != nil {
		t.Fatal(err)
	}
	s.stmts.pinned.putRead(pc)
	if _, err := s.LookupKeyID(ctx, ids[0]); err != nil {
		t.Fatalf("LookupKeyID after its connection closed: %v", err)
	}
}

func TestAssignValue(t *testing.T) {
	var str string
	var n int64
	var b bool
	var null sql.NullInt64
	for _, tc := range []struct {
		dest any
		v    driver.Value
		want any // nil: an error
	}{
		{&str, "x", "x"},
		{&str, []byte("y"), "y"},
		{&str, int64(1), nil},
		{&str, nil, nil},
		{&n, int64(7), int64(7)},
		{&n, "7", nil},
		{&b, int64(1), true},
		{&b, int64(0), false},
		{&b, int64(2), nil},
		{&b, "true", true}, // as database/sql took a hand-edited row
		{&b, []byte("0"), false},
		{&b, "maybe", nil},
		{&null, nil, sql.NullInt64{}},
		{&null, int64(3), sql.NullInt64{Int64: 3, Valid: true}},
		{new(float64), 1.5, nil},
	} {
		t.Run(fmt.Sprintf("%T %T %v", tc.dest, tc.v, tc.v), func(t *testing.T) {
			err := assignValue(tc.dest, tc.v)
			if tc.want == nil {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got any
			switch d := tc.dest.(type) {
			case *string:
				got = *d
			case *int64:
				got = *d
			case *bool:
				got = *d
			case *sql.NullInt64:
				got = *d
			}
			if got != tc.want {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

// A read or a quota charge that arrives while the store closes (a cache
// fill or a request still in flight at shutdown) fails: it must not open a
// connection db.Close would leave open, still answering after Close.
func TestPinnedReadsAfterClose(t *testing.T) {
	s, _, digests, _ := openReadsStore(t, 2, 1)
	ctx := context.Background()
	if _, err := s.LookupKey(ctx, digests[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ChargeQuota(ctx, "site:web", "2026-01", 1, 10, time.Now()); err != nil {
		t.Fatal(err)
	}
	s.stmts.close() // Store.Close's first half: the read lands between the two
	if _, err := s.LookupKey(ctx, digests[0]); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a read between the pinned connections' close and the pool's: %v, want ErrUnavailable", err)
	}
	if _, _, err := s.ChargeQuota(ctx, "site:web", "2026-01", 1, 10, time.Now()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a charge between the pinned connections' close and the pool's: %v, want ErrUnavailable", err)
	}
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	if st := s.db.Stats(); st.OpenConnections != 0 {
		t.Fatalf("%d connections open after Close", st.OpenConnections)
	}
}

// A revocation committed by another process (another Store on the file) is
// seen by the next read on a connection that read the key before: pinned
// connections keep no snapshot between reads.
func TestPinnedReadsSeeOtherWriters(t *testing.T) {
	s, file, digests, ids := openReadsStore(t, 3, 4) // two for reads
	ctx := context.Background()
	readAll := func(revoked bool) {
		t.Helper()
		for i, d := range digests {
			if f, err := s.LookupKey(ctx, d); err != nil || (f.Key.RevokedAt != nil) != revoked {
				t.Fatalf("key %d: revoked_at %v, %v; want revoked %v", i, f.Key.RevokedAt, err, revoked)
			}
		}
	}
	// Every key read on both connections: on the one taken first, then,
	// with that one held, on the other.
	readOnBoth := func(revoked bool) {
		t.Helper()
		readAll(revoked)
		held := take(t, s)
		readAll(revoked)
		s.stmts.pinned.putRead(held)
	}
	readOnBoth(false)
	other, err := OpenSQLite(ctx, file, Options{Format: s.format, Digester: s.digester})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, id := range ids {
		if _, err := other.RevokeKey(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	readOnBoth(true)
}

// take takes a pinned connection of s, as a read does.
func take(t *testing.T, s *Store) *pinnedConn {
	t.Helper()
	pc, err := s.stmts.pinned.getRead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// A key read after a charge runs on the connection the charge committed
// on, which keeps its page cache (another connection would read every
// page again), and charges and reads at once all succeed and count
// exactly.
func TestPinnedConnsShareTheLastUsed(t *testing.T) {
	s, _, digests, _ := openReadsStore(t, 3, 4)
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC)
	for i, d := range digests {
		if _, ok, err := s.ChargeQuota(ctx, "site:web:live", "2026-11", 1, 1<<40, at); err != nil || !ok {
			t.Fatal(ok, err)
		}
		charged := take(t, s)
		s.stmts.pinned.putRead(charged)
		if _, err := s.LookupKey(ctx, d); err != nil {
			t.Fatal(err)
		}
		read := take(t, s)
		s.stmts.pinned.putRead(read)
		if read != charged || len(read.stmts) != 2 {
			t.Fatalf("round %d: the charge ran on %p, the read after it on %p (%d statements prepared on it)", i, charged, read, len(read.stmts))
		}
	}
	for _, pc := range s.stmts.pinned.idle[:2] {
		if pc.conn != nil {
			t.Fatal("a connection other than the one used last was opened")
		}
	}

	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	const goroutines, charges = 6, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range charges {
				if _, ok, err := s.ChargeQuota(ctx, "site:web:test", "2026-11", 1, 1<<40, at); err != nil || !ok {
					t.Errorf("charge: %v, %v", ok, err)
					return
				}
				if _, err := s.LookupKey(ctx, digests[(g+i)%len(digests)]); err != nil {
					t.Errorf("read: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	used, ok, err := s.ChargeQuota(ctx, "site:web:test", "2026-11", 0, 1<<40, at)
	if err != nil || !ok || used != goroutines*charges {
		t.Fatalf("after %d charges at once: used %d, %v, %v", goroutines*charges, used, ok, err)
	}
}

// A charge never waits behind reads: with every read slot held, it still
// finds a connection.
func TestPinnedConnsChargeWhileReadsHoldAll(t *testing.T) {
	s, _, _, _ := openReadsStore(t, 3, 1)
	for range 2 {
		// Given back before the store's cleanup closes it, also when the
		// test fails.
		pc := take(t, s)
		defer s.stmts.pinned.putRead(pc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	at := time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC)
	if used, ok, err := s.ChargeQuota(ctx, "site:web:live", "2026-11", 1, 10, at); err != nil || !ok || used != 1 {
		t.Fatalf("a charge with every read slot held: %d, %v, %v", used, ok, err)
	}
}

// Close waits for a read holding a connection, and closes it after.
func TestPinnedConnsCloseWaitsForARead(t *testing.T) {
	s, _, digests, _ := openReadsStore(t, 2, 1)
	ctx := context.Background()
	if _, err := s.LookupKey(ctx, digests[0]); err != nil {
		t.Fatal(err)
	}
	pc := take(t, s) // the connection that read, held as a read in progress
	closed := make(chan error, 1)
	go func() { closed <- s.stmts.close() }()
	time.Sleep(20 * time.Millisecond) // close returning within it would be a failure; never a false one
	select {
	case err := <-closed:
		t.Errorf("close returned (%v) while a read held a connection", err)
	default:
	}
	if pc.conn == nil {
		t.Error("the read's connection was closed under it")
	}
	s.stmts.pinned.putRead(pc) // before failing: a close waiting for it would hang the store's cleanup
	if t.Failed() {
		return
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if pc.conn != nil || !pc.closed {
		t.Fatal("close left the read's connection open")
	}
}

// A charge whose connection was closed under it fails, is not tried again
// (it might have been applied), and the next charge runs on a fresh
// connection.
func TestPinnedConnsChargeOnAClosedConn(t *testing.T) {
	s, _, _, _ := openReadsStore(t, 2, 1)
	ctx := context.Background()
	at := time.Date(2026, 11, 3, 4, 5, 6, 0, time.UTC)
	if _, ok, err := s.ChargeQuota(ctx, "site:web:live", "2026-11", 1, 10, at); err != nil || !ok {
		t.Fatal(ok, err)
	}
	pc := take(t, s) // the one the charge ran on: used last
	if len(pc.stmts) != 1 {
		t.Fatalf("took a connection with %d statements, not the charge's", len(pc.stmts))
	}
	if err := pc.conn.Close(); err != nil {
		t.Fatal(err)
	}
	s.stmts.pinned.putRead(pc)
	if _, _, err := s.ChargeQuota(ctx, "site:web:live", "2026-11", 1, 10, at); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a charge on a closed connection: %v, want ErrUnavailable", err)
	}
	if pc.conn != nil {
		t.Fatal("the closed connection was kept")
	}
	used, ok, err := s.ChargeQuota(ctx, "site:web:live", "2026-11", 1, 10, at)
	if err != nil || !ok || used != 2 {
		t.Fatalf("the charge after: used %d, %v, %v; want 2 (the failed one not applied)", used, ok, err)
	}
}
