package keystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// ChangeChannel is the channel every write NOTIFYs and every replica LISTENs on.
const ChangeChannel = "keygate_changes"

// Advisory lock ids (arbitrary, fixed): one serializes migrations of replicas
// starting together, the other serializes writers of the change log.
const (
	migrateLockID = 0x6b6579676174 // "keygat"
	writeLockID   = 0x6b6579676177 // "keygaw"
)

// openPostgres opens the PostgreSQL store through pgx's database/sql driver,
// so that every query is the one SQLite runs, and applies the embedded
// migrations under an advisory lock.
func openPostgres(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included; say only what failed.
		return nil, fmt.Errorf("keystore: postgres: cannot parse the DSN")
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Store{db: db, format: opts.Format, digester: opts.Digester, now: opts.clock(),
		begin: lockWrites, notify: notifyChange}
	s.listen = func(ctx context.Context, wake chan<- struct{}, log *slog.Logger) {
		listenLoop(ctx, cfg, wake, log)
	}
	if err := migrateLocked(ctx, db); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// migrateLocked runs migrate while holding a session advisory lock, so that
// replicas started at once apply each migration exactly once: the others wait
// and then find every version recorded.
func migrateLocked(ctx context.Context, db *sql.DB) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("keystore: postgres: %w: %w", ErrUnavailable, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(migrateLockID)); err != nil {
		return fmt.Errorf("keystore: migrate: lock: %w", err)
	}
	// Unlock on a context of its own: a cancelled start must not leave the
	// lock held by a pooled connection.
	defer func() {
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(unlockCtx, `SELECT pg_advisory_unlock($1)`, int64(migrateLockID))
	}()
	return migrate(ctx, db, postgresDialect)
}

// lockWrites makes write transactions take turns. Sequence numbers are handed
// out when a row is inserted, not when it commits; without this lock a
// transaction holding seq 10 could commit after one holding seq 11, and a
// follower that already read 11 would never see 10. Writes are admin
// operations, so serializing them costs nothing that matters.
func lockWrites(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(writeLockID))
	return err
}

// notifyChange tells every listening replica to read the log now. The
// payload is empty: a replica reads from its own position, so one wake-up
// covers any number of rows, and PostgreSQL folds identical notifications
// of one transaction into one.
func notifyChange(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, '')`, ChangeChannel)
	return err
}

// Listen delivers a wake-up on wake for every change notification until ctx
// ends, reconnecting with backoff; after every (re)connection it also wakes
// once, so that the follower re-reads the log from its own position and
// nothing committed while it was deaf is missed. For stores without
// notifications (SQLite) it returns at once: polling is the only path.
func (s *Store) Listen(ctx context.Context, wake chan<- struct{}, log *slog.Logger) {
	if s.listen != nil {
		s.listen(ctx, wake, log)
	}
}

// Notifies reports whether the store pushes change notifications.
func (s *Store) Notifies() bool { return s.listen != nil }

func listenLoop(ctx context.Context, cfg *pgx.ConnConfig, wake chan<- struct{}, log *slog.Logger) {
	const minBackoff, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := minBackoff
	failing := false
	for ctx.Err() == nil {
		started := time.Now()
		err := listenOnce(ctx, cfg, wake, func() {
			if failing {
				log.Info("change notifications reconnected")
				failing = false
			}
		})
		if ctx.Err() != nil {
			return
		}
		if !failing {
			log.Warn("change notifications lost; polling the log until they are back", "err", err)
			failing = true
		}
		if time.Since(started) > maxBackoff {
			backoff = minBackoff // it was up for a while: this is a new outage
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// listenOnce holds one LISTEN connection until it fails or ctx ends.
func listenOnce(ctx context.Context, cfg *pgx.ConnConfig, wake chan<- struct{}, connected func()) error {
	connectCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := pgx.ConnectConfig(connectCtx, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("keystore: listen: connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+ChangeChannel); err != nil {
		return fmt.Errorf("keystore: listen: %w", err)
	}
	connected()
	signal(wake) // whatever was committed while we were not listening
	for {
		// A connection that dies silently (a dropped route, a frozen
		// proxy) never errors on its own: ping it whenever it stays quiet.
		waitCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			signal(wake)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return fmt.Errorf("keystore: listen: ping: %w", err)
			}
		default:
			return fmt.Errorf("keystore: listen: %w", err)
		}
	}
}

// signal wakes the follower without blocking: one pending wake-up is enough.
func signal(wake chan<- struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}
