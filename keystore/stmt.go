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
	// pinWrites, on SQLite, runs writeInt64's statements on a connection
	// of their own (see pinnedStmt) rather than through the pool.
	pinWrites bool
	pinned    map[string]*pinnedStmt
	// closed is set by close: a write arriving after it (a charge still in
	// flight at shutdown) fails rather than pinning a connection that
	// db.Close would leave open, writing after Store.Close.
	closed bool
	// reads, on SQLite, runs scanRow's reads on connections of their own
	// (see pinnedReads) rather than through the pool.
	reads *pinnedReads
}

// scanRow runs q, a read of at most one row, and stores its columns in
// dest; sql.ErrNoRows when it found none.
func (c *stmtCache) scanRow(ctx context.Context, db *sql.DB, q string, args []any, dest ...any) error {
	if c.reads != nil {
		return c.reads.scan(ctx, db, q, args, dest)
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
	if !c.pinWrites {
		var n int64
		err := c.queryRow(ctx, db, q, args...).Scan(&n)
		return n, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, sql.ErrConnDone
	}
	p, ok := c.pinned[q]
	if !ok {
		if c.pinned == nil {
			c.pinned = make(map[string]*pinnedStmt)
		}
		p = &pinnedStmt{query: q}
		c.pinned[q] = p
	}
	c.mu.Unlock()
	return p.queryInt64(ctx, db, args...)
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for q, st := range c.stmts {
		errs = append(errs, st.Close())
		delete(c.stmts, q)
	}
	for q, p := range c.pinned {
		errs = append(errs, p.close())
		delete(c.pinned, q)
	}
	if c.reads != nil {
		errs = append(errs, c.reads.close())
	}
	return errors.Join(errs...)
}

// pinnedStmt is an SQLite write prepared once on a connection it keeps and
// run through the driver's own interface. It is for the write of every
// metered request, the quota charge: through database/sql each run also
// found the statement's connection in the pool, converted its arguments
// and had two goroutines watch its context (database/sql's for the rows,
// the driver's to interrupt SQLite), which together cost about a quarter of
// the charge. Runs take turns on the one connection; SQLite's writers take
// turns anyway.
//
// The connection waits for no lock inside SQLite (busy_timeout 0): a run
// that finds the write lock taken sleeps here and tries again, on SQLite's
// own schedule and within the same busy timeout, and stops waiting when its
// context ends. So the request's deadline bounds the wait without a
// goroutine watching it.
type pinnedStmt struct {
	query string

	mu   sync.Mutex
	conn *sql.Conn
	dc   any // the driver connection stmt was prepared on
	stmt driver.StmtQueryContext
	args []driver.NamedValue
	dest [1]driver.Value
}

// busyDelays is SQLite's own retry schedule for a locked database
// (sqliteDefaultBusyCallback), in milliseconds; the last step repeats.
var busyDelays = [...]time.Duration{1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100}

// queryInt64 runs the statement with args and reads the first column of its
// one row (see stmtCache.writeInt64).
func (p *pinnedStmt) queryInt64(ctx context.Context, db *sql.DB, args ...any) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.args = p.args[:0]
	for i, a := range args {
		p.args = append(p.args, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	var n int64
	err := retryBusyWait(ctx, func() error {
		var err error
		n, err = p.runOnce(ctx, db)
		return err
	})
	return n, err
}

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

// openPinned takes a connection out of db's pool for a pinned statement,
// waiting for no lock inside SQLite (see pinnedStmt).
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

// runOnce runs the statement on the pinned connection, taking one first.
func (p *pinnedStmt) runOnce(ctx context.Context, db *sql.DB) (int64, error) {
	if p.conn == nil {
		conn, err := openPinned(ctx, db)
		if err != nil {
			return 0, err
		}
		p.conn = conn
	}
	var n int64
	err := p.conn.Raw(func(dc any) error {
		var err error
		n, err = p.run(dc)
		return err
	})
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) {
		// The connection is gone: the next run takes a fresh one.
		p.stmt, p.dc = nil, nil
		p.conn.Close()
		p.conn = nil
	}
	return n, err
}

func (p *pinnedStmt) run(dc any) (int64, error) {
	// The driver sees no context: it would start a goroutine to watch one.
	// Nothing here waits (busy_timeout 0) and the statement is short.
	ctx := context.Background()
	if p.stmt == nil || p.dc != dc {
		q, err := prepareQuery(ctx, dc, p.query)
		if err != nil {
			return 0, err
		}
		p.stmt, p.dc = q, dc
	}
	rows, err := p.stmt.QueryContext(ctx, p.args)
	if err != nil {
		return 0, err
	}
	p.dest[0] = nil
	err = rows.Next(p.dest[:])
	if err == nil {
		// Step on to the statement's end, where it commits. Left to the
		// reset in Close, the commit would skip SQLite's WAL hook: no write
		// of the charge would ever checkpoint, and on a server whose writes
		// are mostly charges the log grew until the next key-usage flush,
		// every commit paying a longer probe of the log's index.
		var tail [1]driver.Value
		if err = rows.Next(tail[:]); errors.Is(err, io.EOF) {
			err = nil
		} else if err == nil {
			err = errors.New("keystore: a statement meant to return one row returned more")
		}
	} else if errors.Is(err, io.EOF) {
		err = sql.ErrNoRows
	}
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	n, ok := p.dest[0].(int64)
	if !ok {
		return 0, fmt.Errorf("keystore: %T where an integer was expected", p.dest[0])
	}
	return n, nil
}

// prepareQuery prepares q on the driver connection dc, for a pinned
// statement or read.
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

func (p *pinnedStmt) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil {
		return nil
	}
	err := p.conn.Raw(func(any) error {
		if p.stmt == nil {
			return nil
		}
		return p.stmt.(driver.Stmt).Close()
	})
	p.stmt, p.dc = nil, nil
	return errors.Join(err, p.conn.Close())
}
