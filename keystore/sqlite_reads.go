package keystore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"sync"
)

// pinnedConns runs the key-facts reads of a cache miss and the quota
// charge of a metered request on SQLite connections of their own, through
// the driver's interface: through database/sql each read also found its
// statement's connection in the pool, converted its arguments, had two
// goroutines watch its context and converted every column once more (a
// tenth of BenchmarkCacheMissRead's instructions, and two goroutine
// wakeups a miss on a loaded server), and each charge about a quarter of
// its cost the same way. Nothing waits for a lock inside SQLite
// (busy_timeout 0): an operation that finds the database busy, as during
// another process's write or WAL recovery, sleeps and tries again within
// the busy timeout and its context (retryBusyWait).
//
// Reads and charges share the connections, and an operation takes the one
// used last. A commit makes every other connection drop its whole page
// cache at its next read (SQLite sees the database changed), while the
// connection that committed keeps its own: when each charge committed on a
// connection of its own, the key read after it read all its pages again
// (BenchmarkLookupAfterCharge). Charges take turns (writeMu), as SQLite's
// writers must anyway: turns in Go, not sleeps on SQLITE_BUSY.
//
// Of size connections, reads use at most size-1 at once; a further read
// waits for one, or for its context to end. The charge in turn always
// finds one idle, so it never waits behind reads. An operation holds its
// connection for the microseconds of one indexed lookup or upsert.
type pinnedConns struct {
	// readSlots holds a token for each read holding or taking a
	// connection.
	readSlots chan struct{}
	// writeMu makes charges take turns; the one holding it may take a
	// connection without a token.
	writeMu sync.Mutex
	mu      sync.Mutex
	idle    []*pinnedConn // the last one put back is taken first
}

// pinnedConn is one of pinnedConns' connections; conn is nil until first
// use and after the connection went bad.
type pinnedConn struct {
	// closed is set by close: an operation that arrives after it (a cache
	// fill or a charge still in flight at shutdown) fails rather than
	// opening a connection that db.Close would leave open, answering after
	// Store.Close.
	closed bool
	conn   *sql.Conn
	stmts  map[string]driver.StmtQueryContext
	args   []driver.NamedValue
	vals   []driver.Value
}

// newPinnedConns makes a pool of size connections (at least 2: one for
// reads, one for the charge), opened on first use.
func newPinnedConns(size int) *pinnedConns {
	size = max(size, 2)
	r := &pinnedConns{readSlots: make(chan struct{}, size-1)}
	for range size {
		r.idle = append(r.idle, &pinnedConn{})
	}
	return r
}

// getRead takes the connection put back last for a read, waiting while
// size-1 reads hold one, or until ctx ends.
func (r *pinnedConns) getRead(ctx context.Context) (*pinnedConn, error) {
	select {
	case r.readSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return r.pop(), nil
}

func (r *pinnedConns) putRead(pc *pinnedConn) {
	r.push(pc)
	<-r.readSlots
}

// pop takes the connection put back last. At most size-1 reads and one
// write (under writeMu) hold connections, so one is idle.
func (r *pinnedConns) pop() *pinnedConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	pc := r.idle[len(r.idle)-1]
	r.idle[len(r.idle)-1] = nil
	r.idle = r.idle[:len(r.idle)-1]
	return pc
}

func (r *pinnedConns) push(pc *pinnedConn) {
	r.mu.Lock()
	r.idle = append(r.idle, pc)
	r.mu.Unlock()
}

// setArgs makes args the driver's arguments of the next operation.
func (pc *pinnedConn) setArgs(args []any) {
	pc.args = pc.args[:0]
	for i, a := range args {
		pc.args = append(pc.args, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
}

// scan runs q with args and stores the columns of its one row in dest
// (pointers to string, int64, bool or sql.NullInt64); sql.ErrNoRows when
// it returned no row.
func (r *pinnedConns) scan(ctx context.Context, db *sql.DB, q string, args []any, dest []any) error {
	pc, err := r.getRead(ctx)
	if err != nil {
		return err
	}
	defer r.putRead(pc)
	if pc.closed {
		return sql.ErrConnDone
	}
	pc.setArgs(args)
	if cap(pc.vals) < len(dest) {
		pc.vals = make([]driver.Value, len(dest))
	}
	pc.vals = pc.vals[:len(dest)]
	clear(pc.vals) // no strings of an earlier key kept alive
	err = retryBusyWait(ctx, func() error { return pc.readOnce(ctx, db, q) })
	if err != nil {
		return err
	}
	for i, v := range pc.vals {
		if err := assignValue(dest[i], v); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return nil
}

// queryInt64 runs q, a write that returns one integer (… RETURNING n),
// with args, and reads it; sql.ErrNoRows when q returned no row. The write
// is committed (or failed) when it returns.
func (r *pinnedConns) queryInt64(ctx context.Context, db *sql.DB, q string, args []any) (int64, error) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	pc := r.pop()
	defer r.push(pc)
	if pc.closed {
		return 0, sql.ErrConnDone
	}
	pc.setArgs(args)
	var n int64
	err := retryBusyWait(ctx, func() error {
		var err error
		n, err = pc.writeOnce(ctx, db, q)
		return err
	})
	return n, err
}

// open takes a connection for pc if it has none.
func (pc *pinnedConn) open(ctx context.Context, db *sql.DB) error {
	if pc.conn != nil {
		return nil
	}
	conn, err := openPinned(ctx, db)
	if err != nil {
		return err
	}
	pc.conn = conn
	return nil
}

// readOnce runs q on the connection, taking one first. A connection gone
// bad is dropped and the read tried once more on a fresh one, as
// database/sql does.
func (pc *pinnedConn) readOnce(ctx context.Context, db *sql.DB, q string) error {
	var err error
	for range 2 {
		if err := pc.open(ctx, db); err != nil {
			return err
		}
		err = pc.conn.Raw(func(dc any) error { return pc.read(dc, q) })
		if !isBadConn(err) {
			return err
		}
		pc.drop()
	}
	return err
}

// writeOnce runs the write q on the connection, taking one first. A
// connection gone bad is dropped, and the write is not tried again: the
// next operation takes a fresh connection.
func (pc *pinnedConn) writeOnce(ctx context.Context, db *sql.DB, q string) (int64, error) {
	if err := pc.open(ctx, db); err != nil {
		return 0, err
	}
	var n int64
	err := pc.conn.Raw(func(dc any) error {
		st, err := pc.stmt(dc, q)
		if err != nil {
			return err
		}
		if cap(pc.vals) < 1 {
			pc.vals = make([]driver.Value, 1)
		}
		n, err = queryOneInt64(st, pc.args, pc.vals)
		return err
	})
	if isBadConn(err) {
		pc.drop()
	}
	return n, err
}

func isBadConn(err error) bool {
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone)
}

// stmt is q prepared on the driver connection dc, prepared once.
func (pc *pinnedConn) stmt(dc any, q string) (driver.StmtQueryContext, error) {
	if st, ok := pc.stmts[q]; ok {
		return st, nil
	}
	// No context for the driver: it would start a goroutine to watch it.
	// Nothing here waits (busy_timeout 0) and each statement is short.
	st, err := prepareQuery(context.Background(), dc, q)
	if err != nil {
		return nil, err
	}
	if pc.stmts == nil {
		pc.stmts = make(map[string]driver.StmtQueryContext)
	}
	pc.stmts[q] = st
	return st, nil
}

func (pc *pinnedConn) read(dc any, q string) error {
	st, err := pc.stmt(dc, q)
	if err != nil {
		return err
	}
	rows, err := st.QueryContext(context.Background(), pc.args)
	if err != nil {
		return err
	}
	err = rows.Next(pc.vals)
	if errors.Is(err, io.EOF) {
		err = sql.ErrNoRows
	}
	// Close ends the read transaction: a connection idle in the pool holds
	// no snapshot that would keep a checkpoint from finishing. A failed
	// close is no "no such key", which the cache would keep.
	if cerr := rows.Close(); cerr != nil && (err == nil || errors.Is(err, sql.ErrNoRows)) {
		err = cerr
	}
	return err
}

func (pc *pinnedConn) closeStmts() error {
	var errs []error
	for q, st := range pc.stmts {
		errs = append(errs, st.(driver.Stmt).Close())
		delete(pc.stmts, q)
	}
	return errors.Join(errs...)
}

func (pc *pinnedConn) drop() error {
	if pc.conn == nil {
		return nil
	}
	err := pc.conn.Raw(func(any) error { return pc.closeStmts() })
	// When Raw failed the statements are on a connection no longer ours:
	// closing them there would race its next user, so they are forgotten.
	pc.stmts = nil
	err = errors.Join(err, pc.conn.Close())
	pc.conn = nil
	return err
}

// close closes every connection, waiting for operations in progress.
// Operations after it fail as the closed database's do. Closes take turns
// with charges and each other (writeMu), then hold every read slot.
func (r *pinnedConns) close() error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	for range cap(r.readSlots) {
		r.readSlots <- struct{}{}
	}
	var errs []error
	r.mu.Lock()
	for _, pc := range r.idle {
		errs = append(errs, pc.drop())
		pc.closed = true
	}
	r.mu.Unlock()
	for range cap(r.readSlots) {
		<-r.readSlots
	}
	return errors.Join(errs...)
}

// assignValue stores a column's value as database/sql's Scan would for the
// destination types the key-facts read uses.
func assignValue(dest any, v driver.Value) error {
	switch d := dest.(type) {
	case *string:
		switch v := v.(type) {
		case string:
			*d = v
			return nil
		case []byte:
			*d = string(v)
			return nil
		}
	case *int64:
		if n, ok := v.(int64); ok {
			*d = n
			return nil
		}
	case *bool:
		// As database/sql converts (driver.Bool): 0 and 1, and the text
		// strconv.ParseBool takes, which a hand-edited row may hold.
		b, err := driver.Bool.ConvertValue(v)
		if err != nil {
			return fmt.Errorf("keystore: %w", err)
		}
		*d = b.(bool)
		return nil
	case *sql.NullInt64:
		return d.Scan(v)
	}
	return fmt.Errorf("keystore: cannot store %T in %T", v, dest)
}
