package keystore

import (
	"context"
	"fmt"
	"time"
)

// leaseTTL is how many check intervals a lease lasts without renewal: a
// holder that died is replaced after at most this long, and one that is
// alive renews every check, so it survives two failed renewals in a row
// (a busy database) before it must stop.
const leaseTTL = 3

// exclusiveLease is Exclusive for SQLite, whose processes share a file but
// no lock service: a row per job in worker_leases names the holder until
// expires_at. It is taken and renewed by one conditional upsert (SQLite
// serializes writers, so two processes never both succeed), renewed every
// check, released on a clean stop and taken over by another process once it
// expired. fn's context ends one check before the lease can expire
// unrenewed, so two holders never run at once (with clocks that agree: the processes share a
// file, hence a machine).
func (s *Store) exclusiveLease(ctx context.Context, job int, check time.Duration, fn func(context.Context) error) error {
	holder, err := randomID("wl_", 12)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		// A failed take, a lease held by another, fn's end or a lost
		// lease: contend again after check (fn sees a lost lease as its
		// context ending while Exclusive's has not).
		if expires, got, err := s.takeLease(ctx, job, holder, check); err == nil && got {
			_ = s.holdLease(ctx, job, holder, check, expires, fn)
		}
		select {
		case <-ctx.Done():
		case <-time.After(check):
		}
	}
	return ctx.Err()
}

// takeLease takes job's lease for holder, or renews it, unless another
// holder's lease is still running. It reports whether holder has it now,
// and the expiry it wrote.
func (s *Store) takeLease(ctx context.Context, job int, holder string, check time.Duration) (time.Time, bool, error) {
	now := s.now()
	expires := now.Add(leaseTTL * check)
	res, err := s.db.ExecContext(ctx, `INSERT INTO worker_leases (job, holder, expires_at) VALUES ($1, $2, $3)
		ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE worker_leases.holder = excluded.holder OR worker_leases.expires_at <= $4`,
		job, holder, millis(expires), millis(now))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("keystore: lease %d: %w: %w", job, ErrUnavailable, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("keystore: lease %d: %w", job, err)
	}
	return expires, n == 1, nil
}

// holdLease runs fn while renewing the lease every check. fn's context ends
// when the lease was taken by another holder, or one check before the
// expiry last written (expires) if no renewal moved it: a renewal that
// blocks cannot keep fn running past the moment another process may take
// the lease. holdLease returns once fn did, releasing the lease if it still
// holds it.
func (s *Store) holdLease(ctx context.Context, job int, holder string, check time.Duration, expires time.Time, fn func(context.Context) error) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(runCtx) }()
	tick := time.NewTicker(check)
	defer tick.Stop()
	var lost error
	for lost == nil {
		left := expires.Add(-check).Sub(s.now())
		if left <= 0 {
			lost = fmt.Errorf("keystore: lease %d: not renewed in time", job)
			break
		}
		stop := time.NewTimer(left)
		select {
		case err := <-done:
			stop.Stop()
			s.releaseLease(ctx, job, holder)
			return err
		case <-stop.C:
			continue // left is now ≤ 0
		case <-tick.C:
			stop.Stop()
		}
		renewCtx, cancelRenew := context.WithTimeout(ctx, min(check, left))
		next, got, err := s.takeLease(renewCtx, job, holder, check)
		cancelRenew()
		switch {
		case err == nil && got:
			expires = next
		case err == nil:
			lost = fmt.Errorf("keystore: lease %d: taken over by another process", job)
		}
		// A failed renewal leaves expires as it was: the next turn stops fn
		// in time if no later renewal succeeds.
	}
	cancel()
	<-done
	return lost
}

// releaseLease ends holder's lease at once, so another process need not
// wait for it to expire.
func (s *Store) releaseLease(ctx context.Context, job int, holder string) {
	relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	// If this fails the lease simply expires.
	_, _ = s.db.ExecContext(relCtx, `UPDATE worker_leases SET expires_at = 0 WHERE job = $1 AND holder = $2`, job, holder)
}
