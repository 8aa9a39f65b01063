package shadow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/policies"
)

// noProLayer moves plan pro off API access: the change a platform team
// wants to see the effect of before it answers.
const noProLayer = "keygate:\n  extends: built-in\n  config:\n    plans:\n      pro: {api: false}\n"

// noProTest keeps the layer's own tests passing (a layer must have some).
const noProTest = `package keygate.noapi_test

import rego.v1

import data.keygate.authz

test_pro_refused if {
	d := authz.decision with input as {
		"request": {"method": "GET", "host": "h", "path": "/v1/x", "query": "", "path_ok": true, "headers": {}},
		"credential": {"status": "found", "kind": "key", "scheme": "bearer"},
		"key": {"id": "k", "mode": "live", "name": "", "revoked": false, "expired": false},
		"site": {"id": "s", "account": "a", "domains": [], "active": true},
		"account": {"id": "a", "plan": "pro", "status": "active"},
	}
	d.code == "PLAN_REQUIRED"
}
`

func builtIn(t *testing.T) *policies.Engine {
	t.Helper()
	b, err := policies.Load(policies.Default(), policies.BuiltIn)
	if err != nil {
		t.Fatal(err)
	}
	return compiled(t, b)
}

// compiled is the engine of a loaded bundle.
func compiled(t *testing.T, b *policies.Bundle) *policies.Engine {
	t.Helper()
	p, err := policies.Compile(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return policies.NewEngine(p)
}

func noPro(t *testing.T) *policies.Engine {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"data.yaml": noProLayer, "noapi_test.rego": noProTest} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := policies.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return compiled(t, b)
}

func keyInput(plan string, n int) *policies.Input {
	return &policies.Input{
		Request:    policies.Request{Method: "GET", Host: "api.example.test", Path: fmt.Sprintf("/v1/videos/vid_%d", n), PathOK: true, Headers: map[string]string{}},
		Credential: policies.Credential{Status: policies.CredFound, Kind: "key", Scheme: "bearer"},
		Key:        &policies.Key{ID: fmt.Sprintf("key_%s_%d", plan, n), Mode: "live"},
		Site:       &policies.Site{ID: "site-" + plan, Account: "acct-" + plan, Active: true},
		Account:    &policies.Account{ID: "acct-" + plan, Plan: plan, Status: "active"},
	}
}

// traffic is a mix of plans, each request decided by the live policy.
func traffic(t *testing.T, live *policies.Engine) (ins []*policies.Input, decisions []policies.Decision, pro int) {
	t.Helper()
	plans := []string{"pro", "plus", "max", "free", "pro", "enterprise"}
	for i := range 60 {
		plan := plans[i%len(plans)]
		in := keyInput(plan, i)
		d, err := live.Decide(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if plan == "pro" {
			pro++
		}
		ins, decisions = append(ins, in), append(decisions, d)
	}
	return ins, decisions, pro
}

func TestEvaluatorCountsWhatTheCandidateWouldChange(t *testing.T) {
	live := builtIn(t)
	e := New(Config{Candidate: noPro(t), Queue: 256})
	reg := prometheus.NewRegistry()
	e.Register(reg)
	ins, decisions, pro := traffic(t, live)

	var mu sync.Mutex
	var wg sync.WaitGroup
	got := map[string]Result{}
	for i, in := range ins {
		id := fmt.Sprintf("dec_%d", i)
		wg.Add(1)
		if !e.Submit(id, in, decisions[i], func(r Result) {
			mu.Lock()
			got[id] = r
			mu.Unlock()
			wg.Done()
		}) {
			t.Fatalf("submit %s refused with an empty queue", id)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	wg.Wait()
	cancel()
	<-done

	if n := testutil.ToFloat64(e.decisions.WithLabelValues("OK", "PLAN_REQUIRED")); int(n) != pro {
		t.Errorf("OK→PLAN_REQUIRED counted %v, want exactly the %d pro requests", n, pro)
	}
	for i, in := range ins {
		r := got[fmt.Sprintf("dec_%d", i)]
		wantDiff := in.Account.Plan == "pro"
		if r.Differs != wantDiff {
			t.Errorf("%s plan %s: differs=%v, want %v (%+v)", in.Key.ID, in.Account.Plan, r.Differs, wantDiff, r)
		}
		if wantDiff && (r.Code != "PLAN_REQUIRED" || r.Rule != "plan_without_api" || r.Status != 403) {
			t.Errorf("pro shadow result %+v", r)
		}
	}
	st := e.Status()
	if st.Evaluated != uint64(len(ins)) || st.Differing != uint64(pro) {
		t.Errorf("status %+v, want %d evaluated, %d differing", st, len(ins), pro)
	}
	if len(st.Top) != 1 || st.Top[0].Live != "OK" || st.Top[0].Shadow != "PLAN_REQUIRED" || len(st.Top[0].Examples) == 0 || st.Top[0].Rules["plan_without_api"] != pro {
		t.Errorf("top differences %+v", st.Top)
	}
}

// failing is a candidate whose every evaluation goes wrong.
type failing struct{ panics bool }

func (f failing) Decide(context.Context, *policies.Input) (policies.Decision, error) {
	if f.panics {
		panic("a rule blew up")
	}
	return policies.Decision{}, errors.New("eval_conflict_error")
}

func (f failing) Current() *policies.Policy { return &policies.Policy{} }

func TestEvaluatorContainsCandidateFailures(t *testing.T) {
	live := builtIn(t)
	for _, panics := range []bool{false, true} {
		e := New(Config{Candidate: failing{panics: panics}})
		in := keyInput("pro", 1)
		d, err := live.Decide(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		results := make(chan Result, 1)
		e.Submit("dec_1", in, d, func(r Result) { results <- r })
		ctx, cancel := context.WithCancel(context.Background())
		go e.Run(ctx)
		r := <-results
		cancel()
		if r.Code != CodeError || !r.Differs || r.Error == "" {
			t.Errorf("panics=%v: %+v, want an ERROR result", panics, r)
		}
		if n := testutil.ToFloat64(e.decisions.WithLabelValues("OK", "ERROR")); n != 1 {
			t.Errorf("panics=%v: OK→ERROR counted %v", panics, n)
		}
	}
}

// A full queue drops work, counts it, and never blocks the caller.
func TestEvaluatorDropsWhenFull(t *testing.T) {
	e := New(Config{Candidate: noPro(t), Queue: 2})
	in := keyInput("pro", 1)
	for range 2 {
		if !e.Submit("x", in, policies.Decision{Allow: true, Status: 200}, nil) {
			t.Fatal("refused with room in the queue")
		}
	}
	if e.Submit("x", in, policies.Decision{Allow: true, Status: 200}, nil) {
		t.Fatal("accepted past the queue's bound")
	}
	if n := testutil.ToFloat64(e.dropped); n != 1 {
		t.Fatalf("dropped %v, want 1", n)
	}
}

func TestEvaluatorSamples(t *testing.T) {
	e := New(Config{Candidate: noPro(t), Queue: 10000, Sample: 0.1})
	in := keyInput("pro", 1)
	n := 0
	for range 5000 {
		if e.Submit("x", in, policies.Decision{Allow: true, Status: 200}, nil) {
			n++
		}
	}
	// 10% of 5,000 is 500; a binomial draw is within ±150 all but never.
	if n < 350 || n > 650 {
		t.Fatalf("sampled %d of 5000 at 10%%", n)
	}
}

// decisionLog renders decisions as decision-log lines with their inputs.
func decisionLog(t *testing.T, ins []*policies.Input, decisions []policies.Decision) []byte {
	t.Helper()
	var b bytes.Buffer
	for i, in := range ins {
		m, err := in.AsMap()
		if err != nil {
			t.Fatal(err)
		}
		d := decisions[i]
		line, err := json.Marshal(map[string]any{
			"decision_id": fmt.Sprintf("dec_%d", i), "allow": d.Allow, "status": d.Status,
			"code": d.Code, "rule": d.Rule, "input": m, "path": in.Request.Path,
		})
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func TestReplay(t *testing.T) {
	live := builtIn(t)
	ins, decisions, pro := traffic(t, live)
	log := decisionLog(t, ins, decisions)
	log = append(log, []byte("not json\n{\"decision_id\":\"dec_x\",\"allow\":true,\"status\":200}\n{\"decision_id\":\"half")...)

	tally, st, err := Replay(context.Background(), noPro(t).Current(), bytes.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if st.Lines != len(ins)+3 || st.Malformed != 2 || st.NoInput != 1 {
		t.Errorf("stats %+v", st)
	}
	rows := tally.Rows(true, 0)
	if len(rows) != 1 || rows[0].Live != "OK" || rows[0].Shadow != "PLAN_REQUIRED" || rows[0].Count != uint64(pro) {
		t.Fatalf("differences %+v, want OK→PLAN_REQUIRED × %d", rows, pro)
	}
	if tally.Total() != uint64(len(ins)) {
		t.Errorf("replayed %d, want %d", tally.Total(), len(ins))
	}

	// The live policy replayed on its own log changes nothing.
	same, _, err := Replay(context.Background(), live.Current(), bytes.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	if same.Differing() != 0 || same.Total() != uint64(len(ins)) {
		t.Fatalf("live policy replayed: %d of %d differ: %+v", same.Differing(), same.Total(), same.Rows(true, 0))
	}
}

func TestReplayBoundsInput(t *testing.T) {
	live := builtIn(t)
	big := `{"decision_id":"d","allow":true,"status":200,"input":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}` + "\n"
	tally, _, err := Replay(context.Background(), live.Current(), strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	rows := tally.Rows(false, 0)
	if len(rows) != 1 || rows[0].Shadow != CodeError {
		t.Fatalf("an oversized input must be an ERROR, not decided: %+v", rows)
	}
}
