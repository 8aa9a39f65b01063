package keystore

import (
	"context"
	"errors"
	"testing"
	"time"
)

var errBusyForTest = errors.New("database is locked (5) (SQLITE_BUSY)")

func busyForTest(err error) bool { return errors.Is(err, errBusyForTest) }

// Opening a store retries a first step that met another opener's lock
// (SQLITE_BUSY at once), and only that.
func TestRetryBusy(t *testing.T) {
	ctx := context.Background()
	calls := 0
	err := retryBusy(ctx, time.Minute, busyForTest, func() error {
		if calls++; calls < 4 {
			return errBusyForTest
		}
		return nil
	})
	if err != nil || calls != 4 {
		t.Fatalf("busy three times, then fine: %v after %d calls", err, calls)
	}

	other := errors.New("disk I/O error")
	calls = 0
	if err := retryBusy(ctx, time.Minute, busyForTest, func() error { calls++; return other }); err != other || calls != 1 {
		t.Fatalf("another error: %v after %d calls, want it at once", err, calls)
	}

	calls = 0
	if err := retryBusy(ctx, 0, busyForTest, func() error { calls++; return errBusyForTest }); err != errBusyForTest || calls != 1 {
		t.Fatalf("no time left: %v after %d calls", err, calls)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	calls = 0
	if err := retryBusy(cancelled, time.Minute, busyForTest, func() error { calls++; return errBusyForTest }); err != errBusyForTest || calls != 1 {
		t.Fatalf("cancelled: %v after %d calls", err, calls)
	}
}
