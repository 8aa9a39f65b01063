// Package every is the loop keygate's background workers share: run a job
// on a ticker (and early on a wake-up) until the context ends, and report a
// repeating job's outages once rather than at every tick.
package every

import (
	"context"
	"log/slog"
	"time"
)

// Tick calls job every interval, and at once whenever wake fires (a nil
// wake never does), until ctx ends. Calls never overlap; a tick that comes
// during a call is taken after it.
func Tick(ctx context.Context, interval time.Duration, wake <-chan struct{}, job func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		job(ctx)
	}
}

// Or is d, or def when d is not positive (an unset interval).
func Or(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Outage logs a repeating job's failures as transitions: Down (a warning,
// with the error) on the first failure of a run of them, Up (info) on the
// first success after. A failure because ctx ended is not an outage.
type Outage struct {
	Log      *slog.Logger
	Down, Up string
	failing  bool
}

// Observe records one run's outcome.
func (o *Outage) Observe(ctx context.Context, err error) {
	switch {
	case err != nil && !o.failing && ctx.Err() == nil:
		o.Log.Warn(o.Down, "err", err)
		o.failing = true
	case err == nil && o.failing:
		o.Log.Info(o.Up)
		o.failing = false
	}
}
