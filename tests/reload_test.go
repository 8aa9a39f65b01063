package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// reloadData turns limits off (null deletes in a layer) so the load test
// measures reloads, not the pro plan's rate limit.
const reloadData = "keygate:\n  extends: built-in\n  config:\n    limits: null\n    plans:\n      pro: {concurrency: 3}\n"

const reloadTest = `package keygate.layer_test

import rego.v1

test_pro_has_api if data.keygate.config.plans.pro.api
`

func reloadDataWith(concurrency string) string {
	return strings.Replace(reloadData, "concurrency: 3", "concurrency: "+concurrency, 1)
}

// health reads /health's policy_reload detail.
func (s *Server) policyHealth(t *testing.T) map[string]any {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Reload map[string]any `json:"policy_reload"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Reload
}

const (
	reloadOK     = `keygate_policy_reload_total{result="success"}`
	reloadFailed = `keygate_policy_reload_total{result="failure"}`
)

func TestPolicyHotReload(t *testing.T) {
	env := NewEnv(t)
	env.Seed("acme", "pro", "acme-web")
	key := env.NewKey("acme-web", "live")
	dir := writePolicyDir(t, map[string]string{"data.yaml": reloadData, "layer_test.rego": reloadTest})
	srv := env.Serve("--policies", dir)
	concurrency := func() string {
		v := srv.decide(t, "GET", "/v1/videos", bearer(key))
		if !v.Allow {
			return v.Code
		}
		return v.Headers["x-keygate-concurrency"]
	}
	if got := concurrency(); got != "3" {
		t.Fatalf("concurrency = %s, want 3", got)
	}

	// Plan data changes: new decisions follow.
	start := time.Now()
	writePolicyFiles(t, dir, map[string]string{"data.yaml": reloadDataWith("4")})
	// The bound: new decisions within a second (polling every 250 ms,
	// then compile and the directory's tests).
	Eventually(t, time.Second, "the new plan data to decide", func() bool { return concurrency() == "4" })
	t.Logf("plan data change decided after %v", time.Since(start).Round(time.Millisecond))
	writePolicyFiles(t, dir, map[string]string{"data.yaml": strings.Replace(reloadData, "pro: {concurrency: 3}", "pro: {api: false}", 1) + "\n"})

	// That change breaks the directory's own test: refused, old policy kept.
	Eventually(t, 5*time.Second, "the reload with a failing test to be refused", func() bool { return srv.Metric(t, reloadFailed) == 1 })
	if got := concurrency(); got != "4" {
		t.Errorf("after a refused reload concurrency = %s, want the old policy's 4", got)
	}
	if h := srv.policyHealth(t); !strings.Contains(h["last_error"].(string), "test_pro_has_api") || h["last_ok"] != false {
		t.Errorf("/health policy detail = %v; want the failing test named", h)
	}

	// A syntax error: refused, old policy kept, reported in logs, metrics, /health.
	writePolicyFiles(t, dir, map[string]string{"data.yaml": reloadDataWith("4"), "broken.rego": "package keygate.authz\n\nimport rego.v1\n\nbroken if {\n"})
	Eventually(t, 5*time.Second, "the syntax error to be refused", func() bool { return srv.Metric(t, reloadFailed) == 2 })
	if got := concurrency(); got != "4" {
		t.Errorf("after a syntax error concurrency = %s, want the old policy's 4", got)
	}
	if srv.Metric(t, "keygate_policy_last_reload_success") != 0 {
		t.Error("keygate_policy_last_reload_success should be 0 after a failed reload")
	}
	if h := srv.policyHealth(t); !strings.Contains(h["last_error"].(string), "rego_parse_error") {
		t.Errorf("/health policy detail = %v; want the parse error", h)
	}
	if !strings.Contains(srv.Logs(), "policy reload failed; keeping the last good policy") {
		t.Error("the failed reload was not logged")
	}

	// Fixed: the next version goes in.
	writePolicyFiles(t, dir, map[string]string{"broken.rego": "package keygate.authz\n\nimport rego.v1\n\nnot_broken := true\n", "data.yaml": reloadDataWith("5")})
	Eventually(t, 5*time.Second, "the fixed policy to decide", func() bool { return concurrency() == "5" })
	if srv.Metric(t, "keygate_policy_last_reload_success") != 1 {
		t.Error("keygate_policy_last_reload_success should be 1 again")
	}
}

// TestPolicyReloadUnderLoad: 10 reloads while clients keep asking; not one
// Check fails, and every answer comes from a whole policy, old or new.
func TestPolicyReloadUnderLoad(t *testing.T) {
	env := NewEnv(t)
	env.Seed("acme", "pro", "acme-web")
	key := env.NewKey("acme-web", "live")
	dir := writePolicyDir(t, map[string]string{"data.yaml": reloadDataWith("10"), "layer_test.rego": reloadTest})
	srv := env.Serve("--policies", dir)

	var checks, grpcErrors, wrong atomic.Int64
	var firstWrong atomic.Value
	stop := hammer(4, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := srv.client.Check(ctx, CheckRequest("GET", "/v1/videos", bearer(key)))
		cancel()
		checks.Add(1)
		if err != nil {
			grpcErrors.Add(1)
			return
		}
		ok := resp.GetOkResponse()
		c := ""
		for _, h := range ok.GetHeaders() {
			if h.GetHeader().GetKey() == "x-keygate-concurrency" {
				c = h.GetHeader().GetValue()
			}
		}
		if resp.GetStatus().GetCode() != 0 || len(c) != 2 || c < "10" || c > "20" {
			wrong.Add(1)
			firstWrong.CompareAndSwap(nil, resp.String())
		}
	})
	for i := 1; i <= 10; i++ {
		want := float64(i)
		writePolicyFiles(t, dir, map[string]string{"data.yaml": reloadDataWith(strconv.Itoa(10 + i))})
		Eventually(t, 10*time.Second, "reload to succeed", func() bool { return srv.Metric(t, reloadOK) >= want })
	}
	stop()
	if got := srv.Metric(t, reloadOK); got != 10 {
		t.Errorf("successful reloads = %v, want 10", got)
	}
	if srv.Metric(t, reloadFailed) != 0 {
		t.Errorf("failed reloads: %v", srv.Metric(t, reloadFailed))
	}
	t.Logf("%d checks during 10 reloads: %d gRPC errors, %d wrong or failed decisions", checks.Load(), grpcErrors.Load(), wrong.Load())
	if grpcErrors.Load() != 0 || wrong.Load() != 0 {
		t.Errorf("%d gRPC errors and %d failed or wrong decisions during reloads (first: %v)", grpcErrors.Load(), wrong.Load(), firstWrong.Load())
	}
	if checks.Load() < 100 {
		t.Errorf("only %d checks ran during the reloads; the load did not overlap them", checks.Load())
	}
}
