package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/shadow"
)

// shadowConfig holds the serve settings of a shadow policy: a candidate
// evaluated beside the live policy that never answers.
type shadowConfig struct {
	dir    string
	sample float64
}

func (c *shadowConfig) register(fs *flagSet) {
	fs.StringVar(&c.dir, "shadow-policies", "",
		"a candidate policy directory evaluated on every decision (or --shadow-sample of them) after the live answer, never answering; differences go to metrics, /health and the decision log")
	fs.Float64Var(&c.sample, "shadow-sample", 1, "fraction of decisions the shadow policy evaluates (0 < f <= 1)")
}

func (c shadowConfig) validate() error {
	if c.sample <= 0 || c.sample > 1 {
		return fmt.Errorf("%w: --shadow-sample must be > 0 and <= 1", errUsage)
	}
	return nil
}

// startShadow loads the shadow directory the way --policies is loaded
// (layering, compile, its tests before every swap, hot reload). A shadow
// directory that does not load at start-up does not stop keygate: it is
// reported, and the reloader keeps trying, so fixing the files turns the
// shadow on. It returns nil when no shadow is configured.
func startShadow(ctx context.Context, c shadowConfig, reg prometheus.Registerer, log *slog.Logger) (*shadow.Evaluator, *policies.Reloader) {
	if c.dir == "" {
		return nil, nil
	}
	log = log.With("shadow", true)
	r := &policies.Reloader{Dir: c.dir, Log: log, Engine: policies.NewEngine(nil)}
	if _, err := r.Load(ctx); err != nil {
		log.Error("shadow policy did not load; no shadow decisions until it does", "source", c.dir, "err", err)
	} else {
		log.Info("shadow policy loaded; it is evaluated after every live answer and never answers", "source", c.dir, "sample", c.sample)
	}
	e := shadow.New(shadow.Config{Candidate: r.Engine, Sample: c.sample, Log: log})
	e.Register(reg)
	return e, r
}

// runShadow evaluates queued decisions and keeps the shadow directory
// reloaded until ctx ends (nothing when no shadow is configured).
func runShadow(ctx context.Context, e *shadow.Evaluator, r *policies.Reloader) {
	if e == nil {
		return
	}
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	_ = e.Run(ctx)
	<-done
}

// shadowObserver hands each final decision to the shadow policy, then on
// to the decision log (next, may be nil) with the shadow's answer attached
// when it differs. A decision the shadow skips (not sampled, queue full, no
// input) goes to the log at once.
type shadowObserver struct {
	eval *shadow.Evaluator
	next extauthz.Observer
}

func (s shadowObserver) Observe(o extauthz.Outcome) {
	in := o.Result.Input
	if in != nil && s.eval.Submit(o.ID, in, o.Result.Decision, func(r shadow.Result) {
		if r.Differs {
			o.Shadow = &extauthz.ShadowAnswer{Code: r.Code, Status: r.Status, Rule: r.Rule, Error: r.Error}
		}
		if s.next != nil {
			s.next.Observe(o)
		}
	}) {
		return
	}
	if s.next != nil {
		s.next.Observe(o)
	}
}
