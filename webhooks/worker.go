package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Outbox is the store side of delivery: what is due, and what happened.
type Outbox interface {
	DueDeliveries(ctx context.Context, now time.Time, limit int) ([]keystore.DueDelivery, error)
	RecordAttempt(ctx context.Context, id string, a keystore.Attempt) error
}

// Worker drains the outbox: it sends each due delivery, signed, and records
// the outcome. Run it through keystore.Store.Exclusive so that one replica
// sends at a time; a second one would only duplicate (deliveries are
// at-least-once either way: an attempt is recorded after the receiver
// answered, so a crash in between sends it again with the same webhook-id).
type Worker struct {
	Outbox       Outbox
	Destinations Destinations
	Log          *slog.Logger
	// RetryFor is how long a delivery is retried before it is marked
	// failed (--webhook-retry-for, default 24 h).
	RetryFor time.Duration
	// Timeout bounds one attempt (default 10 s).
	Timeout time.Duration
	// Poll is how often the outbox is read (default 1 s).
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts (defaults
	// 1 s and 10 min); the wait doubles per attempt, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Scan, when set, runs every ScanEvery (default 30 s) on the same one
	// replica: it emits the events no write causes (key.expiring,
	// key.expired, quota.threshold).
	Scan      func(ctx context.Context, now time.Time) error
	ScanEvery time.Duration

	once   sync.Once
	client *http.Client
}

// Defaults.
const (
	DefaultRetryFor = 24 * time.Hour
	defaultTimeout  = 10 * time.Second
	defaultPoll     = time.Second
	defaultMin      = time.Second
	defaultMax      = 10 * time.Minute
	// maxParallel bounds endpoints served at once, so a slow receiver
	// delays only itself.
	maxParallel = 8
	batch       = 100
)

func (w *Worker) init() {
	w.once.Do(func() {
		if w.RetryFor <= 0 {
			w.RetryFor = DefaultRetryFor
		}
		if w.Timeout <= 0 {
			w.Timeout = defaultTimeout
		}
		if w.Poll <= 0 {
			w.Poll = defaultPoll
		}
		if w.MinBackoff <= 0 {
			w.MinBackoff = defaultMin
		}
		if w.MaxBackoff < w.MinBackoff {
			w.MaxBackoff = max(defaultMax, w.MinBackoff)
		}
		if w.ScanEvery <= 0 {
			w.ScanEvery = 30 * time.Second
		}
		if w.Now == nil {
			w.Now = time.Now
		}
		if w.Log == nil {
			w.Log = slog.New(slog.DiscardHandler)
		}
		w.client = w.Destinations.Client(w.Timeout)
	})
}

// Run sends due deliveries every Poll until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	w.init()
	w.Log.Info("webhook delivery worker active")
	t := time.NewTicker(w.Poll)
	defer t.Stop()
	var scanned time.Time
	for {
		if now := w.Now(); w.Scan != nil && now.Sub(scanned) >= w.ScanEvery {
			if err := w.Scan(ctx, now); err != nil && ctx.Err() == nil {
				w.Log.Warn("webhook event scan failed; retrying", "err", err)
			} else {
				scanned = now
			}
		}
		if _, err := w.RunOnce(ctx); err != nil && ctx.Err() == nil {
			w.Log.Warn("webhook outbox unreadable; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// RunOnce sends every delivery due now, each endpoint's in order, and
// returns how many attempts it made.
func (w *Worker) RunOnce(ctx context.Context) (int, error) {
	w.init()
	total := 0
	for ctx.Err() == nil {
		due, err := w.Outbox.DueDeliveries(ctx, w.Now(), batch)
		if err != nil {
			return total, err
		}
		if len(due) == 0 {
			return total, nil
		}
		// DueDeliveries gives at most one per endpoint: send them side by
		// side, then ask again for each endpoint's next.
		sem := make(chan struct{}, maxParallel)
		var wg sync.WaitGroup
		errs := make([]error, len(due))
		for i, d := range due {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				errs[i] = w.deliver(ctx, d)
			}()
		}
		wg.Wait()
		total += len(due)
		if err := errors.Join(errs...); err != nil {
			return total, err
		}
	}
	return total, ctx.Err()
}

// deliver makes one attempt and records it.
func (w *Worker) deliver(ctx context.Context, d keystore.DueDelivery) error {
	status, sendErr := w.send(ctx, d)
	at := w.Now()
	a := keystore.Attempt{At: at, Status: status, Outcome: keystore.DeliveryDelivered, Next: at}
	if sendErr != nil {
		if ctx.Err() != nil {
			return nil // shutting down: the attempt did not happen, it stays due
		}
		a.Error = sendErr.Error()
		deadline := d.RetryFrom.Add(w.RetryFor)
		a.Next = at.Add(w.backoff(d.Attempts + 1))
		switch {
		case !at.Before(deadline):
			a.Outcome = keystore.DeliveryFailed
		default:
			a.Outcome = keystore.DeliveryPending
			if a.Next.After(deadline) {
				a.Next = deadline // one last try at the end of the window
			}
		}
		w.Log.Warn("webhook delivery failed", "delivery", d.ID, "endpoint", d.Endpoint, "type", d.Type,
			"attempt", d.Attempts+1, "status", status, "err", sendErr, "outcome", a.Outcome, "next", a.Next)
	}
	// Record on a context of its own: the receiver has it now, and losing
	// that fact would only send it again, but there is no reason to.
	recCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return w.Outbox.RecordAttempt(recCtx, d.ID, a)
}

// maxResponse is how much of a receiver's answer is read (and discarded):
// enough to reuse the connection, not enough to be a memory sink.
const maxResponse = 64 << 10

func (w *Worker) send(ctx context.Context, d keystore.DueDelivery) (int, error) {
	if d.SecretErr != nil {
		return 0, d.SecretErr
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Payload))
	if err != nil {
		return 0, fmt.Errorf("webhooks: request: %w", err)
	}
	req.Header.Set("content-type", "application/json")
	req.Header.Set("user-agent", "keygate-webhooks/1")
	if err := Sign(req.Header, d.Secrets, d.EventID, w.Now(), d.Payload); err != nil {
		return 0, err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// backoff is the wait before attempt n+1: MinBackoff·2^(n-1) capped at
// MaxBackoff, then jittered to between half and all of it, so receivers
// coming back from an outage are not hit by every sender at once.
func (w *Worker) backoff(n int) time.Duration {
	d := w.MinBackoff
	for i := 1; i < n && d < w.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}
