package tests

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	inDir := func(args ...string) (string, string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, binary, args...)
		cmd.Dir = dir
		cmd.Env = withoutKeygateVars()
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return out.String(), errOut.String(), exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), 0
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
	m := regexp.MustCompile(`live  (kg_live_\S+)`).FindStringSubmatch(srv.Logs())
	if m == nil {
		t.Fatalf("serve --demo printed no live key:\n%s", srv.Logs())
	}
	key := m[1]

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
