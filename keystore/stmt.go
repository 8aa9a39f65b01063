package keystore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmtCache keeps the hot lookups prepared: parsing the SQL was the largest
// part of a cache miss on SQLite. database/sql re-prepares a statement on
// each connection it lands on, so one *sql.Stmt serves the whole pool.
//
// Only a handful of query texts go through it (the key-facts lookups), so
// it needs no eviction.
type stmtCache struct {
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
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

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for q, st := range c.stmts {
		errs = append(errs, st.Close())
		delete(c.stmts, q)
	}
	return errors.Join(errs...)
}
