package tests

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shadowNoPro is a candidate layer that moves plan pro off API access.
const shadowNoPro = "keygate:\n  extends: built-in\n  config:\n    limits: null\n    plans:\n      pro: {api: false}\n"

const shadowNoProTest = `package keygate.layer_test

import rego.v1

test_pro_has_no_api if not data.keygate.config.plans.pro.api
`

// liveNoLimits is the live policy: the built-in one without limits, so the
// test's traffic is never rate limited.
const liveNoLimits = "keygate:\n  extends: built-in\n  config:\n    limits: null\n"

const liveNoLimitsTest = `package keygate.layer_test

import rego.v1

test_pro_has_api if data.keygate.config.plans.pro.api
`

// replayCounts runs `keygate policy replay --json` and returns its outcome
// counts by "LIVE→CANDIDATE".
func replayCounts(t *testing.T, env *Env, dir, log string) (map[string]float64, float64) {
	t.Helper()
	args := []string{"policy", "replay", "--decision-log", log, "--json"}
	if dir != "" {
		args = append(args, "--policies", dir)
	}
	out := env.CLI(args...)
	var r struct {
		Changed  float64 `json:"changed"`
		Outcomes []struct {
			Live   string  `json:"live_code"`
			Shadow string  `json:"shadow_code"`
			Count  float64 `json:"count"`
		} `json:"outcomes"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("policy replay --json: %v: %s", err, out)
	}
	counts := map[string]float64{}
	for _, o := range r.Outcomes {
		counts[o.Live+"→"+o.Shadow] += o.Count
	}
	return counts, r.Changed
}

func TestShadowPolicy(t *testing.T) {
	env := NewEnv(t)
	env.CLI("accounts", "create", "--id", "acme", "--plan", "pro")
	env.CLI("accounts", "create", "--id", "bolt", "--plan", "plus")
	env.CLI("sites", "create", "--id", "acme-web", "--account", "acme")
	env.CLI("sites", "create", "--id", "bolt-web", "--account", "bolt")
	proKeys := []string{env.NewKey("acme-web", "live"), env.NewKey("acme-web", "test")}
	plusKeys := []string{env.NewKey("bolt-web", "live"), env.NewKey("bolt-web", "live")}
	live := writePolicyDir(t, map[string]string{"data.yaml": liveNoLimits, "layer_test.rego": liveNoLimitsTest})
	candidate := writePolicyDir(t, map[string]string{"data.yaml": shadowNoPro, "layer_test.rego": shadowNoProTest})
	logPath := filepath.Join(t.TempDir(), "decisions.log")
	srv := env.Serve("--policies", live, "--shadow-policies", candidate, "--decision-log", logPath, "--decision-log-sample", "1")

	// Traffic: pro and plus keys on key routes with ids in their paths, and
	// some denials (no key) the candidate agrees with.
	pro, plus, anon := 0, 0, 0
	for i := range 90 {
		path := fmt.Sprintf("/v1/videos/vid_%d", i)
		switch i % 3 {
		case 0:
			allowedWith(t, srv.Check(t, "GET", path, bearer(proKeys[i%2])))
			pro++
		case 1:
			allowedWith(t, srv.Check(t, "GET", path, bearer(plusKeys[i%2])))
			plus++
		default:
			denied(t, srv.Check(t, "GET", path, nil))
			anon++
		}
	}
	const changed = `keygate_shadow_decisions_total{live_code="OK",shadow_code="PLAN_REQUIRED"}`
	const agreedOK = `keygate_shadow_decisions_total{live_code="OK",shadow_code="OK"}`
	const agreedMissing = `keygate_shadow_decisions_total{live_code="MISSING_API_KEY",shadow_code="MISSING_API_KEY"}`
	Eventually(t, 30*time.Second, "the shadow to evaluate every decision", func() bool {
		return srv.Metric(t, changed)+srv.Metric(t, agreedOK)+srv.Metric(t, agreedMissing) == float64(pro+plus+anon)
	})
	if got := srv.Metric(t, changed); got != float64(pro) {
		t.Fatalf("OK→PLAN_REQUIRED counted %v, want exactly the %d pro requests", got, pro)
	}
	if got := srv.Metric(t, agreedOK); got != float64(plus) {
		t.Fatalf("OK→OK counted %v, want the %d plus requests", got, plus)
	}

	// The decision log marks exactly the differing decisions.
	var lines []map[string]any
	Eventually(t, 30*time.Second, "every decision in the log", func() bool {
		lines = decisionLines(t, logPath)
		return len(lines) >= pro+plus+anon
	})
	marked := 0
	for _, l := range lines {
		sh, ok := l["shadow"].(map[string]any)
		if !ok {
			continue
		}
		marked++
		if l["allow"] != true || sh["code"] != "PLAN_REQUIRED" || sh["rule"] != "plan_without_api" || l["account"] != "acme" {
			t.Errorf("marked line %v", l)
		}
	}
	if marked != pro {
		t.Errorf("%d log lines carry a shadow object, want %d", marked, pro)
	}
	// The report shows the top difference with example decision ids.
	report := env.CLI("shadow", "report", "--server", "http://"+srv.HTTPAddr)
	if !strings.Contains(report, "PLAN_REQUIRED") || !strings.Contains(report, "plan_without_api") {
		t.Errorf("shadow report:\n%s", report)
	}

	// Replay of the log against the candidate reports the same counts;
	// against the live policy itself, no change.
	counts, n := replayCounts(t, env, candidate, logPath)
	if counts["OK→PLAN_REQUIRED"] != float64(pro) || n != float64(pro) {
		t.Errorf("replay against the candidate: %v (changed %v), want OK→PLAN_REQUIRED × %d", counts, n, pro)
	}
	if _, n := replayCounts(t, env, live, logPath); n != 0 {
		t.Errorf("replay against the live policy changed %v decisions, want 0", n)
	}
	_, _, err := env.TryCLI("policy", "replay", "--policies", candidate, "--decision-log", logPath, "--fail-on-change")
	if exitCode(err) != 3 {
		t.Errorf("--fail-on-change with changes: %v, want exit status 3", err)
	}
	if _, _, err := env.TryCLI("policy", "replay", "--policies", live, "--decision-log", logPath, "--fail-on-change"); err != nil {
		t.Errorf("--fail-on-change without changes: %v, want exit status 0", err)
	}
}

// A shadow directory that does not compile, or whose rule fails at run
// time, never changes an answer.
func TestShadowPolicyBrokenNeverAnswers(t *testing.T) {
	env := NewEnv(t)
	env.Seed("acme", "pro", "acme-web")
	key := env.NewKey("acme-web", "live")
	broken := writePolicyDir(t, map[string]string{"data.yaml": shadowNoPro, "layer_test.rego": shadowNoProTest, "bad.rego": "package keygate.authz\n\nthis is not rego\n"})
	// A rule that errors on real traffic (a conflict only live inputs reach)
	// but passes its own tests.
	erroring := writePolicyDir(t, map[string]string{
		"data.yaml":       shadowNoPro,
		"layer_test.rego": shadowNoProTest,
		"boom.rego": `package keygate.authz

import rego.v1

# Two values for one complete rule whenever a request has an id in its path.
key_headers["x-boom"] := "a" if contains(input.request.path, "vid_")

key_headers["x-boom"] := "b" if contains(input.request.path, "vid_")
`,
	})
	for name, dir := range map[string]string{"syntax error": broken, "runtime error": erroring} {
		t.Run(name, func(t *testing.T) {
			srv := env.Serve("--shadow-policies", dir)
			for i := range 20 {
				allowedWith(t, srv.Check(t, "GET", fmt.Sprintf("/v1/videos/vid_%d", i), bearer(key)))
			}
			denied(t, srv.Check(t, "GET", "/v1/videos", nil))
		})
	}
}
