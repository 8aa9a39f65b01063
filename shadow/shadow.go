// Package shadow evaluates a candidate policy beside the live one without
// letting it answer anything: on every live decision (or a sample of them)
// the candidate decides the same input, off the response path, and what it
// would have answered differently is counted, summarised and handed back to
// the decision log.
//
// The live answer is decided and sent before the candidate runs: Submit only
// puts the input on a bounded queue, and a full queue drops the work (and
// counts it) rather than slowing a Check. Errors and panics of the candidate
// become its "ERROR" code; they never reach the live path.
package shadow

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/policies"
)

// Decider is the candidate policy; policies.Engine implements it.
type Decider interface {
	Decide(ctx context.Context, in *policies.Input) (policies.Decision, error)
	Current() *policies.Policy
}

// Codes for outcomes that are not a policy's deny code.
const (
	// CodeOK is an allow.
	CodeOK = "OK"
	// CodeError is a candidate that gave no valid decision (error, timeout
	// or panic).
	CodeError = "ERROR"
)

// Result is what the candidate would have answered.
type Result struct {
	Code   string `json:"code"`
	Status int    `json:"status"`
	Rule   string `json:"rule,omitempty"`
	Error  string `json:"error,omitempty"`
	// Differs is true when the candidate's answer (allow, status or code)
	// is not the live one.
	Differs bool `json:"-"`
}

// Code is the code a decision is counted under: OK for an allow.
func Code(d policies.Decision) string {
	if d.Allow {
		return CodeOK
	}
	return d.Code
}

// Config sets up an Evaluator. Candidate is required.
type Config struct {
	Candidate Decider
	// Sample is the fraction of decisions evaluated (0 < Sample <= 1; 0
	// means every decision).
	Sample float64
	// Queue bounds the decisions waiting for the candidate (default 1024).
	Queue int
	// Timeout bounds one candidate evaluation (default 1 s).
	Timeout time.Duration
	Log     *slog.Logger
}

// Evaluator runs the candidate policy on live decisions.
type Evaluator struct {
	cfg   Config
	queue chan job

	decisions *prometheus.CounterVec
	dropped   prometheus.Counter
	seconds   prometheus.Counter

	submitted, evaluated atomic.Uint64

	mu      sync.Mutex
	summary *Tally
}

type job struct {
	id   string
	in   *policies.Input
	live policies.Decision
	then func(Result)
}

// New builds an Evaluator; Run starts its worker.
func New(cfg Config) *Evaluator {
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Sample <= 0 || cfg.Sample > 1 {
		cfg.Sample = 1
	}
	return &Evaluator{
		cfg:   cfg,
		queue: make(chan job, cfg.Queue),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keygate_shadow_decisions_total",
			Help: "Decisions the shadow policy evaluated, by the live and the shadow answer (OK for an allow).",
		}, []string{"live_code", "shadow_code"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_shadow_dropped_total",
			Help: "Decisions the shadow policy skipped because its queue was full.",
		}),
		seconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keygate_shadow_evaluation_seconds_total",
			Help: "Time spent evaluating the shadow policy, off the response path.",
		}),
		summary: NewTally(),
	}
}

// Register exports the evaluator's metrics.
func (e *Evaluator) Register(reg prometheus.Registerer) {
	reg.MustRegister(e.decisions, e.dropped, e.seconds)
}

// Submit hands a live decision to the candidate and returns at once. then,
// if not nil, is called from the worker with the candidate's answer; Submit
// reports false (and then is never called) when the decision was not
// sampled or the queue was full.
func (e *Evaluator) Submit(id string, in *policies.Input, live policies.Decision, then func(Result)) bool {
	if in == nil || e.cfg.Sample < 1 && rand.Float64() >= e.cfg.Sample {
		return false
	}
	select {
	case e.queue <- job{id: id, in: in, live: live, then: then}:
		e.submitted.Add(1)
		return true
	default:
		e.dropped.Inc()
		return false
	}
}

// Run evaluates queued decisions until ctx ends.
func (e *Evaluator) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case j := <-e.queue:
			r := e.evaluate(ctx, j)
			if j.then != nil {
				j.then(r)
			}
		}
	}
}

// evaluate decides j with the candidate; nothing it does can escape.
func (e *Evaluator) evaluate(ctx context.Context, j job) (r Result) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			r = Result{Code: CodeError, Status: 500, Error: fmt.Sprintf("panic: %v", p)}
			if e.cfg.Log != nil {
				e.cfg.Log.Error("shadow policy panicked", "decision_id", j.id, "panic", p)
			}
		}
		r.Differs = differs(j.live, r)
		e.seconds.Add(time.Since(start).Seconds())
		e.decisions.WithLabelValues(Code(j.live), r.Code).Inc()
		e.evaluated.Add(1)
		e.mu.Lock()
		e.summary.Add(j.id, j.live, r)
		e.mu.Unlock()
	}()
	if e.cfg.Candidate.Current() == nil {
		return Result{Code: CodeError, Status: 500, Error: "no shadow policy loaded"}
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Timeout)
	defer cancel()
	return resultOf(e.cfg.Candidate.Decide(ctx, j.in))
}

// resultOf is the candidate's answer as counted: its code, or ERROR when
// it gave no valid decision.
func resultOf(d policies.Decision, err error) Result {
	if err != nil {
		return Result{Code: CodeError, Status: 500, Error: err.Error()}
	}
	return Result{Code: Code(d), Status: d.Status, Rule: d.Rule}
}

// differs reports whether the candidate would have answered otherwise.
func differs(live policies.Decision, r Result) bool {
	return r.Code != Code(live) || r.Status != live.Status
}

// Status is the evaluator's summary for /health.
type Status struct {
	Sample    float64 `json:"sample"`
	Submitted uint64  `json:"submitted"`
	Evaluated uint64  `json:"evaluated"`
	Differing uint64  `json:"differing"`
	// Top lists the most frequent differences.
	Top []Row `json:"top_differences"`
}

// Status summarises what the candidate would have changed so far.
func (e *Evaluator) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Status{
		Sample:    e.cfg.Sample,
		Submitted: e.submitted.Load(),
		Evaluated: e.evaluated.Load(),
		Differing: e.summary.Differing(),
		Top:       e.summary.Rows(true, 10),
	}
}
