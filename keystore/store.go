package keystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Store is the SQL store of accounts, sites and keys. Every write appends to
// the change log in the same transaction, so a reader that follows the log
// (Follow) sees every write exactly when it is committed.
//
// Queries use $n placeholders and portable types (BIGINT unix milliseconds,
// TEXT) so that one implementation serves SQLite and PostgreSQL.
type Store struct {
	db       *sql.DB
	format   Format
	digester *Digester
	now      func() time.Time
	// begin runs first in each write transaction; PostgreSQL uses it to
	// serialize writers so that change-log order is commit order.
	begin func(ctx context.Context, tx *sql.Tx) error
	// notify runs inside each write transaction after its change rows are
	// appended; PostgreSQL uses it to NOTIFY listeners.
	notify func(ctx context.Context, tx *sql.Tx) error
	// listen, when set, pushes change notifications (see Listen).
	listen func(ctx context.Context, wake chan<- struct{}, log *slog.Logger)
	// stmts holds the prepared key-facts lookups (the cache-miss path).
	stmts stmtCache
	// writeMu, on SQLite, serializes this process's request-path writes
	// (quota charges, last_used batches): SQLite has one writer at a time,
	// and a writer that finds the lock taken sleeps in its busy handler for
	// 1 ms and more, where waiting on a mutex costs microseconds.
	writeMu *sync.Mutex
}

// lockWrite takes writeMu when the store has one; call the result to
// release it.
func (s *Store) lockWrite() (unlock func()) {
	if s.writeMu == nil {
		return func() {}
	}
	s.writeMu.Lock()
	return s.writeMu.Unlock
}

// Options configure a Store.
type Options struct {
	Format   Format
	Digester *Digester
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o Options) clock() func() time.Time {
	if o.Now != nil {
		return o.Now
	}
	return time.Now
}

// Open opens the store a DSN names: "sqlite:PATH" (the embedded default) or,
// when a PostgreSQL driver is registered by OpenPostgres, "postgres://…".
// Migrations are applied before Open returns.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		return OpenSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"), opts)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return openPostgres(ctx, dsn, opts)
	}
	return nil, fmt.Errorf("keystore: store %s: want sqlite:PATH or postgres://…", dsnScheme(dsn))
}

// Close closes the database.
func (s *Store) Close() error { return errors.Join(s.stmts.close(), s.db.Close()) }

// DB exposes the database handle for tests and health checks.
func (s *Store) DB() *sql.DB { return s.db }

// Ping reports whether the store answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

func millis(t time.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func optMillis(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromOptMillis(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromMillis(n.Int64)
	return &t
}

// txLog appends change-log rows inside a write transaction.
type txLog struct {
	tx *sql.Tx
	at int64
	// added counts the rows appended, so that a write that changed nothing
	// a cache holds (refresh tokens, say) wakes no listener.
	added *int
	// events builds the transaction's outbox events (outbox.go).
	events *txEvents
	// targets are the entities to audit (see audit.go).
	targets *[]auditTarget
}

func (l txLog) add(ctx context.Context, e Entity, id string) error {
	_, err := l.tx.ExecContext(ctx, `INSERT INTO changes (entity, entity_id, at) VALUES ($1, $2, $3)`, string(e), id, l.at)
	if err == nil {
		*l.added++
		l.note(e, id, "")
		err = l.events.add(ctx, l, e, id)
	}
	return err
}

// write runs fn in a transaction that ends by notifying listeners when fn
// appended to the change log.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx, log txLog) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("keystore: %s: %w: %w", op, ErrUnavailable, err)
	}
	defer tx.Rollback() //nolint:errcheck // a committed tx makes this a no-op
	if s.begin != nil {
		if err := s.begin(ctx, tx); err != nil {
			return fmt.Errorf("keystore: %s: %w: %w", op, ErrUnavailable, err)
		}
	}
	var added int
	var targets []auditTarget
	log := txLog{tx: tx, at: millis(s.now()), added: &added, events: &txEvents{op: op}, targets: &targets}
	if err := fn(tx, log); err != nil {
		return fmt.Errorf("keystore: %s: %w", op, err)
	}
	if err := s.audit(ctx, tx, op, log.at, targets); err != nil {
		return fmt.Errorf("keystore: %s: %w", op, err)
	}
	if s.notify != nil && added > 0 {
		if err := s.notify(ctx, tx); err != nil {
			return fmt.Errorf("keystore: %s: notify: %w", op, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("keystore: %s: commit: %w", op, err)
	}
	return nil
}

type rowScanner interface{ Scan(dest ...any) error }

// update is the read-modify-write of a partial update in one write
// transaction: read finds row id, apply changes it and writes it back (and
// logs the change), and the row is returned as apply left it.
func update[T any](ctx context.Context, s *Store, op, id string, read func(context.Context, rowQuerier, string) (T, error), apply func(tx *sql.Tx, log txLog, row *T) error) (T, error) {
	var out T
	err := s.write(ctx, op, func(tx *sql.Tx, log txLog) error {
		row, err := read(ctx, tx, id)
		if err != nil {
			return err
		}
		if err := apply(tx, log, &row); err != nil {
			return err
		}
		out = row
		return nil
	})
	return out, err
}

// digestIn is the condition "column IN ($1, …, $n)" on digests with its
// arguments: a credential is looked up under every pepper's digest at once.
func digestIn(column string, digests []Digest) (string, []any) {
	args := make([]any, len(digests))
	marks := make([]string, len(digests))
	for i, d := range digests {
		args[i], marks[i] = string(d), fmt.Sprintf("$%d", i+1)
	}
	return column + " IN (" + strings.Join(marks, ", ") + ")", args
}

// patch sets *field to *change when an update gives one (nil: unchanged).
func patch[T any](field *T, change *T) {
	if change != nil {
		*field = *change
	}
}

// insert runs one INSERT of the entity id and appends it to the change
// log; a duplicate id is ErrConflict.
func insert(ctx context.Context, tx *sql.Tx, log txLog, e Entity, id, query string, args ...any) error {
	if _, err := tx.ExecContext(ctx, query, args...); err != nil {
		if isUnique(err) {
			return fmt.Errorf("%w: %s %q", ErrConflict, e, id)
		}
		return err
	}
	return log.add(ctx, e, id)
}
