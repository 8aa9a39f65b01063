package tests

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNewcomerPath follows the README's first steps through the binary:
// a command run before serve says where the database is missing instead
// of creating one; serve --demo creates it; check explains with exit 0 or
// 3; /health counts the built-in policy's tests; usage shows the plan's
// quota before the first metered request.
func TestNewcomerPath(t *testing.T) {
	dir := t.TempDir()
	newcomer := &Env{t: t, Dir: dir, environ: withoutKeygateVars()}
	inDir := func(args ...string) (string, string, int) {
		out, errOut, err := newcomer.TryCLI(args...)
		code := exitCode(err)
		if code < 0 {
			t.Fatal(err)
		}
		return out, errOut, code
	}

	_, errOut, code := inDir("keys", "list", "--site", "demo-site")
	if code != 1 || !strings.Contains(errOut, "no keygate database at ./keygate.db; start keygate serve here or pass --store") {
		t.Fatalf("a command before serve: exit %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "keygate.db")); err == nil {
		t.Fatal("a management command created the database")
	}

	env := &Env{t: t, Store: "sqlite:" + filepath.Join(dir, "keygate.db")}
	srv := env.Serve("--demo")
	key := srv.demoKeys(t)["live"]

	if out, _, code := inDir("check", "--path", "/v1/videos", "-H", "Authorization: Bearer "+key); code != 0 || !strings.Contains(out, `"allow": true`) {
		t.Errorf("check with the demo key: exit %d\n%s", code, out)
	}
	if out, _, code := inDir("check", "--path", "/v1/videos"); code != 3 || !strings.Contains(out, "MISSING_API_KEY") {
		t.Errorf("check without a key: exit %d, want 3\n%s", code, out)
	}

	var health struct {
		Reload struct{ Tests int } `json:"policy_reload"`
	}
	Eventually(t, 30*time.Second, "/health to count the built-in policy's tests", func() bool {
		resp, err := http.Get("http://" + srv.HTTPAddr + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&health) == nil && health.Reload.Tests > 0
	})
	// The built-in policy decides with the compiled evaluator from its
	// first request (its IR plan is made when keygate is built), and says so.
	var evaluator struct {
		Evaluator string `json:"policy_evaluator"`
	}
	Eventually(t, 30*time.Second, "the built-in policy to decide with the compiled evaluator", func() bool {
		resp, err := http.Get("http://" + srv.HTTPAddr + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&evaluator) == nil && evaluator.Evaluator == "compiled" &&
			srv.Metric(t, "keygate_policy_compiled") == 1
	})
	out, _, _ := inDir("policy", "test")
	if !strings.Contains(out, "\n"+strconv.Itoa(health.Reload.Tests)+" passed, 0 failed\n") {
		t.Errorf("/health counts %d tests; policy test says %s", health.Reload.Tests, out)
	}

	var usage struct {
		Usage []struct{ Quota, Remaining int64 }
	}
	out, _, _ = inDir("usage", "--site", "demo-site", "--json")
	if err := json.Unmarshal([]byte(out), &usage); err != nil || len(usage.Usage) != 2 || usage.Usage[0].Quota != 10000 || usage.Usage[0].Remaining != 10000 {
		t.Errorf("usage before first use (plan pro: 10,000): %v %s", err, out)
	}
}

// withoutKeygateVars is the test's environment minus KEYGATE_* settings,
// as on a newcomer's machine.
func withoutKeygateVars() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") {
			out = append(out, kv)
		}
	}
	return out
}
