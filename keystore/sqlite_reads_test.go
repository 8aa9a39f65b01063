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

// openReadsStore is a SQLite store with size pinned read connections and
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
	s.stmts.reads = newPinnedReads(size)
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
	s, file, digests, ids := openReadsStore(t, 2, 20)
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
	rc := <-s.stmts.reads.free // the only connection, busy
	defer func() { s.stmts.reads.free <- rc }()
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
	rc := <-s.stmts.reads.free
	if err := rc.conn.Close(); err != nil {
		t.Fatal(err)
	}
	s.stmts.reads.free <- rc
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
	s, file, digests, ids := openReadsStore(t, 2, 4)
	ctx := context.Background()
	for range 2 { // both connections have read every key
		for _, d := range digests {
			if f, err := s.LookupKey(ctx, d); err != nil || f.Key.RevokedAt != nil {
				t.Fatalf("before: %+v, %v", f.Key, err)
			}
		}
	}
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
	for range 2 {
		for i, d := range digests {
			if f, err := s.LookupKey(ctx, d); err != nil || f.Key.RevokedAt == nil {
				t.Fatalf("key %d after another writer revoked it: revoked_at %v, %v", i, f.Key.RevokedAt, err)
			}
		}
	}
}
