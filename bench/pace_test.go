package bench

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// The pacer never sends early, and gives back the runtime as it found it.
func TestPacerNeverEarly(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	p := newPacer()
	if runtime.GOMAXPROCS(0) < 2 {
		t.Fatalf("pacing with %d P: the sends would wait for the pacing thread's sleeps", runtime.GOMAXPROCS(0))
	}
	start := time.Now()
	for i := range 200 {
		due := start.Add(time.Duration(i) * 137 * time.Microsecond)
		p.until(due)
		if now := time.Now(); now.Before(due) {
			t.Fatalf("request %d left %s before it was due", i, due.Sub(now))
		}
	}
	p.until(start.Add(-time.Second)) // past: returns at once
	p.stop()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS %d after the load, %d before", got, before)
	}
}

// An open-loop run answers every request and reports how late the tool
// sent them.
func TestOpenLoopReportsLateness(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, out := runAgainstNoop(ctx, t, "--keys", "20", "--sites", "2", "--duration", "1s", "--rate", "300")
	if !strings.Contains(out, "outcomes: ALLOW 100.00%") || !strings.Contains(out, "sent late ") {
		t.Fatalf("output:\n%s", out)
	}
}
