package keystore

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/keygate/keygate/internal/every"
)

// UsageWriter persists last-used times.
type UsageWriter interface {
	TouchKeys(ctx context.Context, used map[string]time.Time) error
}

// Usage records when keys were last used, off the hot path: Record only
// touches a map, and Run writes the batch at most once per interval, so a
// key costs at most one write per interval however busy it is.
type Usage struct {
	Writer   UsageWriter
	Interval time.Duration
	Log      *slog.Logger

	mu      sync.Mutex
	pending map[string]time.Time
}

// maxPendingUsage bounds memory if the store stays unreachable.
const maxPendingUsage = 100_000

// Record notes that key id was used at t. The newest time wins, also when
// a failed flush puts its older batch back.
func (u *Usage) Record(id string, t time.Time) {
	u.mu.Lock()
	if u.pending == nil {
		u.pending = make(map[string]time.Time)
	}
	old, ok := u.pending[id]
	if (ok && t.After(old)) || (!ok && len(u.pending) < maxPendingUsage) {
		u.pending[id] = t
	}
	u.mu.Unlock()
}

// Run flushes every interval until ctx ends, then flushes once more with a
// short deadline of its own so that shutdown loses nothing.
func (u *Usage) Run(ctx context.Context) {
	every.Tick(ctx, every.Or(u.Interval, 30*time.Second), nil, u.Flush)
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	u.Flush(flushCtx)
}

// Flush writes what is pending; on failure the batch is kept for next time.
func (u *Usage) Flush(ctx context.Context) {
	u.mu.Lock()
	batch := u.pending
	u.pending = nil
	u.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	if err := u.Writer.TouchKeys(ctx, batch); err != nil {
		u.Log.Warn("recording key usage failed; will retry", "keys", len(batch), "err", err)
		for id, at := range batch {
			u.Record(id, at)
		}
	}
}
