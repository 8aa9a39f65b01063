package main

import (
	"context"
	"log/slog"
	"runtime"
	"testing"
)

// The spare P is there while any holder runs and gone once the last one
// finished; a GOMAXPROCS someone else set meanwhile is left as it is.
func TestSparePWhileHeld(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	s := &spareP{getenv: func(string) string { return "" }}
	var outer, nested, afterNested int
	s.run(func() {
		outer = runtime.GOMAXPROCS(0)
		s.run(func() { nested = runtime.GOMAXPROCS(0) })
		afterNested = runtime.GOMAXPROCS(0)
	})
	if outer != before+1 || nested != before+1 || afterNested != before+1 {
		t.Fatalf("GOMAXPROCS while held %d, nested %d, after the nested one %d; want %d", outer, nested, afterNested, before+1)
	}
	if n := runtime.GOMAXPROCS(0); n != before {
		t.Fatalf("GOMAXPROCS after %d, want %d back", n, before)
	}
	s.run(func() { runtime.GOMAXPROCS(before + 5) })
	if n := runtime.GOMAXPROCS(0); n != before+5 {
		t.Fatalf("GOMAXPROCS set while held was changed to %d on release", n)
	}
	runtime.GOMAXPROCS(before)

	// The operator's GOMAXPROCS stands: no spare P.
	set := &spareP{getenv: func(k string) string { return map[string]string{"GOMAXPROCS": "1"}[k] }}
	set.run(func() { outer = runtime.GOMAXPROCS(0) })
	if outer != before {
		t.Fatalf("GOMAXPROCS set in the environment: %d while held, want %d", outer, before)
	}
}

// procsAt sends GOMAXPROCS on procs when a line with its message is logged.
type procsAt struct {
	slog.Handler
	msg   string
	procs chan<- int
}

func (h procsAt) Enabled(context.Context, slog.Level) bool { return true }

func (h procsAt) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.procs <- runtime.GOMAXPROCS(0)
	}
	return nil
}

// The built-in policy is completed with the spare P: the first requests
// after SERVING are not queued behind OPA's compile.
func TestBuiltinCompletesWithSpareP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logged := make(chan int, 1)
	log := slog.New(procsAt{Handler: slog.DiscardHandler, msg: "policy evaluator", procs: logged})
	rt, err := startPolicy(ctx, "", log)
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.GOMAXPROCS(0)
	served := make(chan struct{})
	done := make(chan struct{})
	go func() { rt.run(ctx, served); close(done) }()
	close(served)
	during := <-logged // after completing, still holding the spare P
	cancel()
	<-done
	if during != before+1 {
		t.Fatalf("GOMAXPROCS while completing %d, want %d", during, before+1)
	}
	if n := runtime.GOMAXPROCS(0); n != before {
		t.Fatalf("GOMAXPROCS after %d, want %d back", n, before)
	}
}
