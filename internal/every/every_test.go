package every

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTickRunsUntilCancelAndWakesEarly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	wake := make(chan struct{})
	var calls atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		// An hour-long interval: only wake-ups can call the job.
		Tick(ctx, time.Hour, wake, func(context.Context) { calls.Add(1) })
	}()
	for i := 1; i <= 3; i++ {
		wake <- struct{}{}
		deadline := time.Now().Add(5 * time.Second)
		for calls.Load() != int64(i) {
			if time.Now().After(deadline) {
				t.Fatalf("after %d wake-ups the job ran %d times", i, calls.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Tick did not return after its context ended")
	}
}

func TestTickTicks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var calls atomic.Int64
	Tick(ctx, time.Millisecond, nil, func(context.Context) {
		if calls.Add(1) == 3 {
			cancel()
		}
	})
	if calls.Load() != 3 {
		t.Fatalf("job ran %d times, want 3 before the cancel", calls.Load())
	}
}

func TestOr(t *testing.T) {
	if Or(0, time.Second) != time.Second || Or(-1, time.Second) != time.Second || Or(time.Minute, time.Second) != time.Minute {
		t.Fatal("Or does not default unset intervals only")
	}
}

func TestOutageLogsTransitionsOnce(t *testing.T) {
	var buf bytes.Buffer
	o := &Outage{Log: slog.New(slog.NewTextHandler(&buf, nil)), Down: "store down", Up: "store back"}
	ctx := context.Background()
	boom := errors.New("boom")
	for _, err := range []error{nil, boom, boom, boom, nil, nil, boom, nil} {
		o.Observe(ctx, err)
	}
	if got := strings.Count(buf.String(), "store down"); got != 2 {
		t.Errorf("%d down lines, want 2:\n%s", got, &buf)
	}
	if got := strings.Count(buf.String(), "store back"); got != 2 {
		t.Errorf("%d up lines, want 2:\n%s", got, &buf)
	}
	if !strings.Contains(buf.String(), "err=boom") {
		t.Errorf("the down line does not carry the error:\n%s", &buf)
	}
	buf.Reset()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	(&Outage{Log: o.Log, Down: "store down"}).Observe(cancelled, context.Canceled)
	if buf.Len() != 0 {
		t.Errorf("a failure after the context ended was logged: %s", &buf)
	}
}
