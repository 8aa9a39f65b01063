package keystore

import (
	"context"
	"log/slog"
	"time"

	"github.com/keygate/keygate/internal/every"
)

// ChangeSource is the change log a Follower reads.
type ChangeSource interface {
	Changes(ctx context.Context, after int64, limit int) ([]Change, error)
	LastChange(ctx context.Context) (int64, error)
}

// Invalidator is told about every change the Follower reads.
type Invalidator interface {
	Invalidate(entity Entity, id string)
}

// Follower tails the store's change log and invalidates the cache for every
// row, so writes made by any process (a CLI in a shell, another replica)
// reach this one's cache within one poll interval.
type Follower struct {
	Source   ChangeSource
	Cache    Invalidator
	Interval time.Duration
	Log      *slog.Logger
	// Wake, when set, triggers an immediate poll (PostgreSQL NOTIFY).
	Wake <-chan struct{}
	// OnApplied, when set, is called with each change after it is applied;
	// metrics use it to measure propagation lag.
	OnApplied func(Change)
	// Filter, when set, sees every change before Cache does (KeyFilter):
	// a new key must pass the filter before negative cache entries that
	// could hide it are retired.
	Filter interface {
		Apply(ctx context.Context, c Change) error
	}

	last int64
}

// Start records the log position to follow from. Changes before it are
// already reflected in the store, and the cache starts empty.
func (f *Follower) Start(ctx context.Context) error {
	seq, err := f.Source.LastChange(ctx)
	if err != nil {
		return err
	}
	f.last = seq
	return nil
}

// Run polls until ctx ends. A failed poll is logged and retried on the next
// tick; the position only moves past rows that were applied.
func (f *Follower) Run(ctx context.Context) {
	outage := every.Outage{Log: f.Log, Down: "change log unreachable; cached facts age until it is back", Up: "change log reachable again"}
	every.Tick(ctx, every.Or(f.Interval, 200*time.Millisecond), f.Wake, func(ctx context.Context) {
		outage.Observe(ctx, f.Poll(ctx))
	})
}

// syncTracker is implemented by caches that bound staleness by the last
// complete read of the change log (Cache).
type syncTracker interface{ BeginSync() (done func()) }

// Poll applies every change after the current position.
func (f *Follower) Poll(ctx context.Context) error {
	synced := func() {}
	if t, ok := f.Cache.(syncTracker); ok {
		synced = t.BeginSync()
	}
	for {
		changes, err := f.Source.Changes(ctx, f.last, 500)
		if err != nil {
			return err
		}
		for _, c := range changes {
			if f.Filter != nil {
				if err := f.Filter.Apply(ctx, c); err != nil {
					return err
				}
			}
			f.Cache.Invalidate(c.Entity, c.ID)
			f.last = c.Seq
			if f.OnApplied != nil {
				f.OnApplied(c)
			}
		}
		if len(changes) < 500 {
			synced()
			return nil
		}
	}
}
