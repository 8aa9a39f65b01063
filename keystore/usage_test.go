package keystore_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/keygate/keygate/keystore"
)

// usageWriter is a fake store that records every batch.
type usageWriter struct {
	mu      sync.Mutex
	batches []map[string]time.Time
	fail    bool
}

func (w *usageWriter) TouchKeys(_ context.Context, used map[string]time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail {
		return errors.New("store down")
	}
	w.batches = append(w.batches, used)
	return nil
}

func (w *usageWriter) got() []map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]map[string]time.Time(nil), w.batches...)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestUsageBatchesOneWritePerKey(t *testing.T) {
	w := &usageWriter{}
	u := &keystore.Usage{Writer: w, Log: quiet}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		u.Record("key_a", t0.Add(time.Duration(i)*time.Millisecond))
		u.Record("key_b", t0)
	}
	u.Flush(context.Background())
	u.Flush(context.Background()) // nothing new: no write
	want := []map[string]time.Time{{"key_a": t0.Add(999 * time.Millisecond), "key_b": t0}}
	if diff := cmp.Diff(want, w.got()); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}

func TestUsageKeepsBatchOnFailure(t *testing.T) {
	w := &usageWriter{fail: true}
	u := &keystore.Usage{Writer: w, Log: quiet}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	u.Record("key_a", t0)
	u.Flush(context.Background())
	w.mu.Lock()
	w.fail = false
	w.mu.Unlock()
	u.Record("key_b", t0)
	u.Flush(context.Background())
	want := []map[string]time.Time{{"key_a": t0, "key_b": t0}}
	if diff := cmp.Diff(want, w.got()); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}

// Run writes what is pending when its context ends, so shutdown loses nothing.
func TestUsageFlushesOnShutdown(t *testing.T) {
	w := &usageWriter{}
	u := &keystore.Usage{Writer: w, Log: quiet, Interval: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Run(ctx); close(done) }()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	u.Record("key_a", t0)
	cancel()
	<-done
	want := []map[string]time.Time{{"key_a": t0}}
	if diff := cmp.Diff(want, w.got()); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}

// The newest time wins: a failed flush that puts its older batch back must
// not overwrite a use recorded while the write was under way.
func TestUsageNewestTimeWins(t *testing.T) {
	w := &usageWriter{}
	u := &keystore.Usage{Writer: w, Log: quiet}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	u.Record("key_a", t0.Add(time.Second)) // recorded during the failed write
	u.Record("key_a", t0)                  // the failed batch, put back
	u.Flush(context.Background())
	want := []map[string]time.Time{{"key_a": t0.Add(time.Second)}}
	if diff := cmp.Diff(want, w.got()); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}
