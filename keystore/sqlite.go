package keystore

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"runtime"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// sqliteBusyTimeout is how long a connection waits for another one's
// write lock before it gives up (SQLITE_BUSY).
const sqliteBusyTimeout = 5 * time.Second

// sqliteBusy is SQLITE_BUSY, the primary result code of a lock wait that
// gave up.
const sqliteBusy = 5

// OpenSQLite opens (creating if needed) the embedded SQLite store at path, in
// WAL mode so that management commands in another process can write while a
// server reads.
func OpenSQLite(ctx context.Context, file string, opts Options) (*Store, error) {
	if file == "" {
		return nil, fmt.Errorf("keystore: sqlite: empty path")
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	// No mmap_size: reading through a memory map cut a key read's
	// instructions after a quota charge, but SQLite unmaps the whole file
	// whenever another connection has committed, so each such read paid an
	// munmap, an mmap and a page fault a page in the kernel: a charge and
	// a read took twice the CPU time (BenchmarkLookupAfterCharge, user+sys;
	// callgrind, which sees no kernel, showed a gain).
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+file+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("keystore: sqlite: %w", err)
	}
	s := &Store{db: db, format: opts.Format, digester: opts.Digester, now: opts.clock(), writeMu: &sync.Mutex{}}
	// Key reads are microseconds of CPU: more at once than there are
	// processors gains nothing, and each connection keeps a page cache (up
	// to 2 MiB). One more that a charge always finds idle.
	s.stmts.pinned = newPinnedConns(min(max(2, runtime.GOMAXPROCS(0)), 8) + 1)
	// Processes opening a brand-new file at once: a connection's
	// journal_mode(WAL) can get SQLITE_BUSY at once instead of waiting (SQLite
	// does not wait where waiting could deadlock), so the first steps are
	// tried again within the busy timeout.
	err = retryBusy(ctx, sqliteBusyTimeout, isBusy, func() error { return migrate(ctx, db, sqliteDialect) })
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// retryBusy runs op until it succeeds, fails other than busy says, or
// limit has passed, waiting a little longer after each busy failure.
func retryBusy(ctx context.Context, limit time.Duration, busy func(error) bool, op func() error) error {
	deadline := time.Now().Add(limit)
	wait := time.Millisecond
	for {
		err := op()
		if err == nil || !busy(err) || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}
