package shadow

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/policies"
)

// benchInputs are varied live decisions: plans, keys and ids in paths, so
// neither policy answers from one memo entry.
func benchInputs(b *testing.B, live *policies.Engine) ([]*policies.Input, []policies.Decision) {
	plans := []string{"pro", "plus", "max", "free", "enterprise"}
	var ins []*policies.Input
	var ds []policies.Decision
	for i := range 512 {
		in := keyInput(plans[i%len(plans)], i)
		d, err := live.Decide(context.Background(), in)
		if err != nil {
			b.Fatal(err)
		}
		ins, ds = append(ins, in), append(ds, d)
	}
	return ins, ds
}

// BenchmarkLiveWithShadow is the live path with and without a shadow
// policy: the shadow adds a queue send to the response path and nothing
// else. "shadow-µs/decision" is the CPU the shadow spends per evaluated
// decision, off that path (its worker runs beside the benchmark).
func BenchmarkLiveWithShadow(b *testing.B) {
	t := &testing.T{}
	live := builtIn(t)
	candidate := noPro(t)
	if t.Failed() {
		b.Fatal("fixtures")
	}
	ins, ds := benchInputs(b, live)
	// decide is the live path: the live decision, then (with a shadow) the
	// hand-over to it; it returns the path's own latency.
	decide := func(b *testing.B, i int, e *Evaluator) time.Duration {
		in := ins[i%len(ins)]
		start := time.Now()
		if _, err := live.Decide(context.Background(), in); err != nil {
			b.Fatal(err)
		}
		if e != nil {
			e.Submit("", in, ds[i%len(ds)], nil)
		}
		return time.Since(start)
	}
	b.Run("off", func(b *testing.B) {
		lat := make([]time.Duration, 0, 1<<16)
		for i := 0; b.Loop(); i++ {
			lat = append(lat, decide(b, i, nil))
		}
		reportLatency(b, lat)
	})
	b.Run("on", func(b *testing.B) {
		e := New(Config{Candidate: candidate, Queue: 4096})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = e.Run(ctx) }()
		lat := make([]time.Duration, 0, 1<<16)
		for i := 0; b.Loop(); i++ {
			lat = append(lat, decide(b, i, e))
		}
		b.StopTimer()
		reportLatency(b, lat)
		// Let the worker finish what was queued before measuring its cost.
		for deadline := time.Now().Add(10 * time.Second); len(e.queue) > 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		cancel()
		<-done
		if n := e.evaluated.Load(); n > 0 {
			b.ReportMetric(testutil.ToFloat64(e.seconds)/float64(n)*1e6, "shadow-µs/decision")
			b.ReportMetric(float64(testutil.ToFloat64(e.dropped))/float64(b.N), "dropped/op")
		}
	})
}

// reportLatency reports the live path's own latency per call (median and
// p99), which is what a shadow must leave unchanged: throughput would also
// count the shadow worker's use of the other core.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "live-p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "live-p99-ns")
}
