package keystore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"modernc.org/sqlite"
)

// stmtCache keeps the hot lookups prepared: parsing the SQL was the largest
// part of a cache miss on SQLite. database/sql re-prepares a statement on
// each connection it lands on, so one *sql.Stmt serves the whole pool.
//
// Only a handful of query texts go through it (the key-facts lookups and
// the quota charge), so it needs no eviction.
type stmtCache struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
	// pinned, on SQLite, runs scanRow's reads and writeInt64's writes on
	// connections of their own (see pinnedConns) rather than through the
	// pool.
	pinned *pinnedConns
}

// scanRow runs q, a read of at most one row, and stores its columns in
// dest; sql.ErrNoRows when it found none.
func (c *stmtCache) scanRow(ctx context.Context, db *sql.DB, q string, args []any, dest ...any) error {
	if c.pinned != nil {
		return c.pinned.scan(ctx, db, q, args, dest)
	}
	return c.queryRow(ctx, db, q, args...).Scan(dest...)
}

// queryRow runs q as a prepared statement, preparing it on first use. If
// preparing fails (the store is down, say), the query runs unprepared so
// that the caller sees the query's own error.
func (c *stmtCache) queryRow(ctx context.Context, db *sql.DB, q string, args ...any) *sql.Row {
	c.mu.Lock()
	st, ok := c.stmts[q]
	c.mu.Unlock()
	if !ok {
		prepared, err := db.PrepareContext(ctx, q)
		if err != nil {
			return db.QueryRowContext(ctx, q, args...)
		}
		c.mu.Lock()
		if st, ok = c.stmts[q]; !ok {
			if c.stmts == nil {
				c.stmts = make(map[string]*sql.Stmt)
			}
			c.stmts[q], st = prepared, prepared
		} else {
			prepared.Close()
		}
		c.mu.Unlock()
	}
	return st.QueryRowContext(ctx, args...)
}

// writeInt64 runs q, a write that returns one integer (… RETURNING n), and
// reads it; sql.ErrNoRows when q returned no row. The write is committed
// (or failed) when it returns.
func (c *stmtCache) writeInt64(ctx context.Context, db *sql.DB, q string, args ...any) (int64, error) {
	if c.pinned != nil {
		return c.pinned.queryInt64(ctx, db, q, args)
	}
	var n int64
	err := c.queryRow(ctx, db, q, args...).Scan(&n)
	return n, err
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for q, st := range c.stmts {
		errs = append(errs, st.Close())
		delete(c.stmts, q)
	}
	if c.pinned != nil {
		errs = append(errs, c.pinned.close())
	}
	return errors.Join(errs...)
}

// busyDelays is SQLite's own retry schedule for a locked database
// (sqliteDefaultBusyCallback), in milliseconds; the last step repeats.
var busyDelays = [...]time.Duration{1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100}

// retryBusyWait runs op until it returns other than SQLITE_BUSY, sleeping
// between tries on SQLite's own schedule (busyDelays) for at most the busy
// timeout, and no longer than ctx lasts.
func retryBusyWait(ctx context.Context, op func() error) error {
	var waited time.Duration
	for try := 0; ; try++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := op()
		if !isBusy(err) {
			return err
		}
		d := busyDelays[min(try, len(busyDelays)-1)] * time.Millisecond
		if waited += d; waited > sqliteBusyTimeout {
			return err
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// openPinned takes a connection out of db's pool for pinnedConns, waiting
// for no lock inside SQLite (see pinnedConns).
func openPinned(ctx context.Context, db *sql.DB) (*sql.Conn, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, `PRAGMA busy_timeout = 0`); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// queryOneInt64 runs st, a write that returns one integer, with args, and
// reads it; dest, with room for at least one value, is where the driver's
// rows put it (the caller's, so that no run allocates it).
func queryOneInt64(st driver.StmtQueryContext, args []driver.NamedValue, dest []driver.Value) (int64, error) {
	// The driver sees no context: it would start a goroutine to watch one.
	// Nothing here waits (busy_timeout 0) and the statement is short.
	rows, err := st.QueryContext(context.Background(), args)
	if err != nil {
		return 0, err
	}
	dest = dest[:1]
	dest[0] = nil
	err = rows.Next(dest)
	v := dest[0]
	if err == nil {
		// Step on to the statement's end, where it commits. Left to the
		// reset in Close, the commit would skip SQLite's WAL hook: no write
		// of the charge would ever checkpoint, and on a server whose writes
		// are mostly charges the log grew until the next key-usage flush,
		// every commit paying a longer probe of the log's index.
		if err = rows.Next(dest); errors.Is(err, io.EOF) {
			err = nil
		} else if err == nil {
			err = errors.New("keystore: a statement meant to return one row returned more")
		}
	} else if errors.Is(err, io.EOF) {
		err = sql.ErrNoRows
	}
	dest[0] = nil
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	n, ok := v.(int64)
	if !ok {
		return 0, fmt.Errorf("keystore: %T where an integer was expected", v)
	}
	return n, nil
}

// prepareQuery prepares q on the driver connection dc, for pinnedConns.
func prepareQuery(ctx context.Context, dc any, q string) (driver.StmtQueryContext, error) {
	prep, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, fmt.Errorf("keystore: driver %T cannot prepare with a context", dc)
	}
	st, err := prep.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	sq, ok := st.(driver.StmtQueryContext)
	if !ok {
		st.Close()
		return nil, fmt.Errorf("keystore: driver statement %T cannot query with a context", st)
	}
	return sq, nil
}

// isBusy reports SQLITE_BUSY (another connection holds the lock), in any
// of its extended forms.
func isBusy(err error) bool {
	if err == nil {
		return false // before e, which escapes: every charge asks
	}
	var e *sqlite.Error
	return errors.As(err, &e) && e.Code()&0xff == sqliteBusy
}
