package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/policies"
)

// policyRuntime is the policy engine of `keygate serve` and, with
// --policies DIR, the reloader that keeps it on the newest good version.
type policyRuntime struct {
	engine   *policies.Engine
	reloader *policies.Reloader // nil for the built-in policy
	loadedAt time.Time          // of the built-in policy
	log      *slog.Logger       // the built-in policy's evaluator is logged once complete
	// builtinTests is how many built-in Rego tests passed when run was
	// started (-1 until they have run), for /health.
	builtinTests atomic.Int64
	// completed is closed once the policy in use is complete (at once for
	// DIR; for the built-in policy by run, after the first SERVING). The
	// other work that follows SERVING waits for it, so that on two cores
	// one stays free for the first requests and health checks.
	completed chan struct{}
}

// startPolicy starts the built-in policy from what was derived from it at
// build time (policies.StartBuiltin: run completes it once serving), or
// loads DIR the way every reload will (compile, then DIR's Rego tests must
// pass).
func startPolicy(ctx context.Context, dir string, log *slog.Logger) (*policyRuntime, error) {
	if dir == "" {
		p, err := policies.StartBuiltin(ctx)
		if err != nil {
			return nil, err
		}
		rt := &policyRuntime{engine: policies.NewEngine(p), loadedAt: time.Now(), log: log, completed: make(chan struct{})}
		rt.builtinTests.Store(-1)
		return rt, nil
	}
	r := &policies.Reloader{Dir: dir, Log: log}
	if _, err := r.Load(ctx); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	close(done)
	return &policyRuntime{engine: r.Engine, reloader: r, completed: done}, nil
}

// run watches the directory until ctx ends. The built-in policy has
// nothing to watch: once serving, it completes the policy's analyses (the
// memo, folding, the compiled evaluator; decisions until then are OPA's,
// alike but dearer), then runs its tests once, builtinTestsDelay after the
// first SERVING (off the start-up path, and off the first decisions' CPU:
// they compile the policy again), so that /health reports how many passed
// as it does for a directory. Both run with the spare P (serve_start.go),
// so that the first health checks and requests do not queue behind them.
func (p *policyRuntime) run(ctx context.Context, served <-chan struct{}) {
	if p.reloader != nil {
		p.reloader.Run(ctx)
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-served:
	}
	spare.run(func() {
		full := p.engine.Complete(ctx)
		close(p.completed)
		policies.LogEvaluator(ctx, p.log, policies.BuiltIn, full)
	})
	select {
	case <-ctx.Done():
		return
	case <-time.After(builtinTestsDelay):
	}
	// Read again with its tests: the policy in use was loaded without them.
	b, err := loadBundle("")
	if err != nil {
		return
	}
	spare.run(func() {
		if report, err := policies.RunTests(ctx, b, false); err == nil {
			p.builtinTests.Store(int64(len(report.Results) - report.Failed()))
		}
	})
}

// register exports reload outcomes:
// keygate_policy_reload_total{result="success"|"failure"},
// keygate_policy_last_reload_success (1 when the newest attempt worked),
// keygate_policy_loaded_timestamp_seconds and keygate_policy_compiled.
func (p *policyRuntime) register(reg prometheus.Registerer) {
	status := p.status
	for _, result := range []string{"success", "failure"} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keygate_policy_reload_total", Help: "Policy directory reloads by result.",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 {
			s := status()
			if result == "success" {
				return float64(s.Successes)
			}
			return float64(s.Failures)
		}))
	}
	for _, result := range []string{"hit", "miss", "bypass"} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keygate_decision_memo_total", Help: "Decisions by how the decision memo served them (hit, miss: evaluated and remembered, bypass: evaluated without it).",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 {
			s := p.engine.MemoStats()
			return float64(map[string]uint64{"hit": s.Hits, "miss": s.Misses, "bypass": s.Bypasses}[result])
		}))
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_decision_memo_entries", Help: "Decisions the current policy's memo holds.",
		}, func() float64 { return float64(p.engine.MemoStats().Entries) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_decision_memo_bytes", Help: "Estimated heap the current policy's memo holds (bounded by its 64 MiB budget).",
		}, func() float64 { return float64(p.engine.MemoStats().Bytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keygate_decision_memo_evictions_total", Help: "Decisions the memo dropped to stay within its budget (restarts at 0 when a policy reload builds a new memo).",
		}, func() float64 { return float64(p.engine.MemoStats().Evictions) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_policy_last_reload_success", Help: "1 if the newest policy reload (or the start-up load) succeeded, else 0.",
		}, func() float64 {
			if status().LastOK {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_policy_loaded_timestamp_seconds", Help: "When the policy in use was installed (unix seconds).",
		}, func() float64 { return float64(status().LoadedAt.UnixNano()) / 1e9 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_policy_compiled", Help: "1 when the policy in use decides with keygate's compiled evaluator (its IR plan), 0 with OPA's topdown evaluator (until the plan is ready, or a policy the compiled evaluator does not run: the log says why).",
		}, func() float64 {
			if p.engine.Current().Evaluator() == policies.EvalCompiled {
				return 1
			}
			return 0
		}),
	)
}

// status describes the policy in use; the built-in policy never reloads.
func (p *policyRuntime) status() policies.ReloadStatus {
	if p.reloader != nil {
		return p.reloader.Status()
	}
	return policies.BuiltinStatus(p.engine.Current(), p.loadedAt, int(max(p.builtinTests.Load(), 0)))
}

// loadBundle reads the built-in policy, or DIR (layered on the built-in one
// when its data says keygate.extends: built-in).
func loadBundle(dir string) (*policies.Bundle, error) {
	if dir == "" {
		return policies.Load(policies.Default(), policies.BuiltIn)
	}
	return policies.LoadDir(dir)
}
