package keystore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
)

// pinnedReads runs the key-facts reads of a cache miss on SQLite
// connections of their own, through the driver's interface, as pinnedStmt
// runs the quota charge and for the same reasons: through database/sql
// each read also found its statement's connection in the pool, converted
// its arguments, had two goroutines watch its context and converted every
// column once more: a tenth of BenchmarkCacheMissRead's
// instructions, and two goroutine wakeups a miss on a loaded server. Reads
// wait for no lock inside SQLite either (busy_timeout 0; a read that finds
// the database busy, as during another process's WAL recovery, sleeps and
// tries again within the busy timeout and its context).
//
// size connections serve at most size reads at once; a further read waits
// for one, or for its context to end. A read holds its connection for the
// microseconds of one indexed lookup.
type pinnedReads struct {
	free chan *readConn
}

// readConn is one of pinnedReads' connections; conn is nil until first use
// and after the connection went bad.
type readConn struct {
	// closed is set by close: a read that arrives after it (a cache fill
	// still in flight at shutdown) fails rather than opening a connection
	// that db.Close would leave open, answering after Store.Close.
	closed bool
	conn   *sql.Conn
	stmts  map[string]driver.StmtQueryContext
	args   []driver.NamedValue
	vals   []driver.Value
}

func newPinnedReads(size int) *pinnedReads {
	r := &pinnedReads{free: make(chan *readConn, size)}
	for range size {
		r.free <- &readConn{}
	}
	return r
}

// scan runs q with args and stores the columns of its one row in dest
// (pointers to string, int64, bool or sql.NullInt64); sql.ErrNoRows when
// it returned no row.
func (r *pinnedReads) scan(ctx context.Context, db *sql.DB, q string, args []any, dest []any) error {
	var rc *readConn
	select {
	case rc = <-r.free:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { r.free <- rc }()
	if rc.closed {
		return sql.ErrConnDone
	}
	rc.args = rc.args[:0]
	for i, a := range args {
		rc.args = append(rc.args, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	if cap(rc.vals) < len(dest) {
		rc.vals = make([]driver.Value, len(dest))
	}
	rc.vals = rc.vals[:len(dest)]
	clear(rc.vals) // no strings of an earlier key kept alive
	err := retryBusyWait(ctx, func() error { return rc.runOnce(ctx, db, q) })
	if err != nil {
		return err
	}
	for i, v := range rc.vals {
		if err := assignValue(dest[i], v); err != nil {
			return fmt.Errorf("column %d: %w", i, err)
		}
	}
	return nil
}

// runOnce runs q on the connection, taking one first. A connection gone
// bad is dropped and the read tried once more on a fresh one, as
// database/sql does.
func (rc *readConn) runOnce(ctx context.Context, db *sql.DB, q string) error {
	var err error
	for range 2 {
		if rc.conn == nil {
			conn, err := openPinned(ctx, db)
			if err != nil {
				return err
			}
			rc.conn = conn
		}
		err = rc.conn.Raw(func(dc any) error { return rc.run(dc, q) })
		if !errors.Is(err, driver.ErrBadConn) && !errors.Is(err, sql.ErrConnDone) {
			return err
		}
		rc.drop()
	}
	return err
}

func (rc *readConn) run(dc any, q string) error {
	// No context for the driver: it would start a goroutine to watch it.
	// Nothing here waits (busy_timeout 0) and the read is one indexed row.
	ctx := context.Background()
	st, ok := rc.stmts[q]
	if !ok {
		var err error
		if st, err = prepareQuery(ctx, dc, q); err != nil {
			return err
		}
		if rc.stmts == nil {
			rc.stmts = make(map[string]driver.StmtQueryContext)
		}
		rc.stmts[q] = st
	}
	rows, err := st.QueryContext(ctx, rc.args)
	if err != nil {
		return err
	}
	err = rows.Next(rc.vals)
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

func (rc *readConn) closeStmts() error {
	var errs []error
	for q, st := range rc.stmts {
		errs = append(errs, st.(driver.Stmt).Close())
		delete(rc.stmts, q)
	}
	return errors.Join(errs...)
}

func (rc *readConn) drop() error {
	if rc.conn == nil {
		return nil
	}
	err := rc.conn.Raw(func(any) error { return rc.closeStmts() })
	// When Raw failed the statements are on a connection no longer ours:
	// closing them there would race its next user, so they are forgotten.
	rc.stmts = nil
	err = errors.Join(err, rc.conn.Close())
	rc.conn = nil
	return err
}

// close closes every connection, waiting for reads in progress. Reads
// after it fail as the closed database's do.
func (r *pinnedReads) close() error {
	var errs []error
	held := make([]*readConn, 0, cap(r.free))
	for range cap(r.free) {
		rc := <-r.free
		errs = append(errs, rc.drop())
		rc.closed = true
		held = append(held, rc)
	}
	for _, rc := range held {
		r.free <- rc
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
