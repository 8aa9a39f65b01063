package keystore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

const exclusiveLockBase = 0x6b6579676100 // "keyga\0"

// Exclusive runs fn while this process is the only one across replicas
// running job: on PostgreSQL it holds a session advisory lock on a
// connection of its own, checked every check interval; fn's context ends
// as soon as the lock may be lost, and Exclusive tries again until ctx ends.
// On SQLite, whose file several processes may share, a lease row does the
// same (worker_lease.go).
func (s *Store) Exclusive(ctx context.Context, job int, check time.Duration, fn func(context.Context) error) error {
	if _, pg := s.db.Driver().(*stdlib.Driver); !pg {
		return s.exclusiveLease(ctx, job, check, fn)
	}
	for ctx.Err() == nil {
		err := s.holdLock(ctx, exclusiveLockBase+int64(job), check, fn)
		if err != nil && ctx.Err() == nil {
			// The lock connection failed, or fn did: wait, then contend again.
			select {
			case <-ctx.Done():
			case <-time.After(check):
			}
		}
	}
	return ctx.Err()
}

func (s *Store) holdLock(ctx context.Context, id int64, check time.Duration, fn func(context.Context) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for {
		var got bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, id).Scan(&got); err != nil {
			return err
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(check):
		}
	}
	defer func() {
		unlockCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		// If this fails the connection is broken and the lock went with it.
		_, _ = conn.ExecContext(unlockCtx, `SELECT pg_advisory_unlock($1)`, id)
	}()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(runCtx) }()
	for {
		select {
		case err := <-done:
			return err
		case <-time.After(check):
			pingCtx, cancelPing := context.WithTimeout(ctx, check)
			err := conn.PingContext(pingCtx)
			cancelPing()
			if err != nil {
				cancel()
				<-done
				return fmt.Errorf("keystore: exclusive: lock connection: %w", err)
			}
		}
	}
}
