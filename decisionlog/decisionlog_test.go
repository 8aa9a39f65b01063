package decisionlog

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/policies"
)

func outcome(id string, allow bool) extauthz.Outcome {
	d := policies.Decision{Allow: allow, Status: 401, Code: "INVALID_API_KEY", Rule: "credential"}
	in := &policies.Input{
		Request: policies.Request{Method: "GET", Host: "api.example.com", Path: "/v1/videos",
			Query: "api_key=kg_live_0123456789abcdefghijklmnopqrstuvwxyz", PathOK: true,
			Headers: map[string]string{"x-request-id": "r1", "x-leak": "Bearer kg_at_abc.def"}},
		Credential: policies.Credential{Status: policies.CredUnknown, Kind: "key", Scheme: "bearer"},
	}
	return extauthz.Outcome{ID: id, Transport: extauthz.TransportGRPC, Client: "10.0.0.1", Start: time.Unix(1700000000, 0),
		Duration: 42 * time.Microsecond, Result: extauthz.Result{Decision: d, Input: in, Memo: "miss"}}
}

func readLines(t *testing.T, path string) []Entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func newLog(t *testing.T, path string, sample float64, buffer int) (*Logger, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	l, err := New(Config{Path: path, SampleAllows: sample, Buffer: buffer, Secrets: []string{"kg_live_", "kg_test_", "kg_at_", "kg_rt_"}}, reg)
	if err != nil {
		t.Fatal(err)
	}
	return l, reg
}

// TestLine: the fields of a deny, with secrets in the input redacted.
func TestLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	l, _ := newLog(t, path, 1, 0)
	l.Observe(outcome("01ID", false))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), "kg_live_0123") || strings.Contains(string(raw), "kg_at_abc") {
		t.Fatalf("a secret reached the log: %s", raw)
	}
	lines := readLines(t, path)
	if len(lines) != 1 {
		t.Fatalf("%d lines", len(lines))
	}
	e := lines[0]
	if e.DecisionID != "01ID" || e.Code != "INVALID_API_KEY" || e.Status != 401 || e.Transport != "grpc" || e.Path != "/v1/videos" ||
		e.Host != "api.example.com" || e.CredentialKind != "key" || e.DurationUS != 42 || e.Memo != "miss" || e.Client != "10.0.0.1" {
		t.Errorf("entry %+v", e)
	}
	if req := e.Input.Request; req.Query != "[redacted]" || req.Path != "/v1/videos" || req.Headers["x-leak"] != "[redacted]" || req.Headers["x-request-id"] != "r1" {
		t.Errorf("input request %+v", req)
	}
}

// TestInputAsPolicySawIt: the logged input is the document the policy
// evaluated (policies.Input.AsMap), field for field.
func TestInputAsPolicySawIt(t *testing.T) {
	in := &policies.Input{
		Request: policies.Request{Method: "POST", Host: "api.example.com", Path: "/v1/public/acme-web/x", Query: "a=1", PathOK: true,
			Origin:  &policies.Origin{Scheme: "https", Host: "app.acme.com", Port: "443", DefaultPort: true},
			Headers: map[string]string{"origin": "https://app.acme.com", "accept": "*/*"}},
		Credential: policies.Credential{Status: policies.CredFound, Kind: "token", Scheme: "bearer"},
		Key:        &policies.Key{ID: "key_1", Mode: "live", Name: "prod", Revoked: true},
		Site:       &policies.Site{ID: "acme-web", Account: "acme", Domains: []string{"acme.com"}, Active: true, Limits: map[string]int64{"rate": 5}},
		Account:    &policies.Account{ID: "acme", Plan: "pro", Status: "active"},
		Public: &policies.Public{Status: policies.CredFound, Site: &policies.Site{ID: "other", Account: "o"},
			Account: &policies.Account{ID: "o", Plan: "max", Status: "trialing", Limits: map[string]int64{"quota": 0}}},
	}
	want, err := in.AsMap()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	raw, _ := json.Marshal(logInput(in, func(s string) string { return s }))
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	wantRaw, _ := json.Marshal(want)
	var wantJSON map[string]any
	if err := json.Unmarshal(wantRaw, &wantJSON); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantJSON, got); diff != "" {
		t.Errorf("logged input differs from the policy's (-policy +log):\n%s", diff)
	}
}

// TestSampleAndDrop: allows are sampled out at 0 and denies kept; a full
// buffer drops and counts instead of blocking.
func TestSampleAndDrop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	l, _ := newLog(t, path, 0, 0)
	l.Observe(outcome("allow", true))
	l.Observe(outcome("deny", false))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if lines := readLines(t, path); len(lines) != 1 || lines[0].DecisionID != "deny" {
		t.Errorf("lines %+v", lines)
	}
	if got := testutil.ToFloat64(l.sampled); got != 1 {
		t.Errorf("sampled out %v", got)
	}

	// A logger whose writer is stuck (reopen holds it) fills its one-slot
	// buffer; the rest are dropped without blocking.
	stuck := &Logger{entries: make(chan *extauthz.Outcome, 1), cfg: Config{SampleAllows: 1},
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "d"}), sampled: prometheus.NewCounter(prometheus.CounterOpts{Name: "s"})}
	for range 5 {
		stuck.Observe(outcome("x", false))
	}
	if got := testutil.ToFloat64(stuck.dropped); got != 4 {
		t.Errorf("dropped %v, want 4", got)
	}
}

// TestReopen: after the file is moved away (logrotate), Reopen writes to a
// new file at the path.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decisions.log")
	l, _ := newLog(t, path, 1, 0)
	l.Observe(outcome("before", false))
	// Reopen flushes, so the first line is in the old file.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Observe(outcome("after", false))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	old, cur := readLines(t, path+".1"), readLines(t, path)
	if len(old) != 1 || old[0].DecisionID != "before" || len(cur) != 1 || cur[0].DecisionID != "after" {
		t.Errorf("rotated %+v, current %+v", old, cur)
	}
}

// TestRedactEncoded: a key the client percent-encoded (once or twice) is
// redacted like a plain one; ordinary escapes are left alone.
func TestRedactEncoded(t *testing.T) {
	l, _ := newLog(t, filepath.Join(t.TempDir(), "d.log"), 1, 0)
	defer l.Close()
	for in, want := range map[string]string{
		"key=kg_live_abc":         "[redacted]",
		"key=kg%5Flive%5Fabc":     "[redacted]",
		"key=kg%255Flive%255Fabc": "[redacted]",
		"q=%6Bg_test_x":           "[redacted]",
		"q=caf%C3%A9&page=2":      "q=caf%C3%A9&page=2",
		"q=100%":                  "q=100%",
		"/v1/videos/vid%20one":    "/v1/videos/vid%20one",
	} {
		if got := l.redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}
