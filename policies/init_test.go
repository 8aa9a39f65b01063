package policies

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyDefault writes the built-in policy into a new directory, as a team
// copying policies/default would, makes the team's edits to file and
// returns the directory. Each edit replaces its first string with its
// second; a first string no longer in the file fails the test, whose edits
// then need updating.
func copyDefault(t *testing.T, file string, edits [][2]string) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(Default(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Default(), p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, file)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	edited := string(data)
	for _, r := range edits {
		if !strings.Contains(edited, r[0]) {
			t.Fatalf("%s no longer contains %q; update this test's edits", file, r[0])
		}
		edited = strings.Replace(edited, r[0], r[1], 1)
	}
	if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runDirTests(t *testing.T, dir string) *TestReport {
	t.Helper()
	b, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := RunTests(context.Background(), b, false)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A copy of policies/default whose data.yaml a team edited (numbers and
// wording) still passes its own tests: the built-in tests read data-driven
// expectations from the data.
func TestEditedDefaultCopyPassesItsTests(t *testing.T) {
	dir := copyDefault(t, "data.yaml", [][2]string{
		{"concurrency: 3", "concurrency: 4"},
		{"concurrency: 1\n", "concurrency: 2\n"},
		{"plus: {rate: 60,", "plus: {rate: 61,"},
		{"quota: 10000}", "quota: 12000}"},
		{"methods: [POST], rate: 5, quota: 1}", "methods: [POST], rate: 6, quota: 2}"},
		{"message: No API key provided in the request", "message: Send your key"},
		{"message: Your plan doesn't include API access", "message: Upgrade to use the API"},
		{"TRIAL_EXPIRED: {status: 402, message: Trial expired}", "TRIAL_EXPIRED: {status: 402, message: Your trial is over}"},
		{"QUOTA_EXCEEDED: {status: 403, message: Monthly quota exceeded for this site}", "QUOTA_EXCEEDED: {status: 403, message: No quota left}"},
	})
	r := runDirTests(t, dir)
	if err := r.Err(); err != nil {
		for _, res := range r.Results {
			if !res.Pass {
				t.Logf("%s:\n%s", res.Name, res.Failure)
			}
		}
		t.Fatal(err)
	}
	if len(r.Results) < 30 {
		t.Fatalf("%d tests ran; want the whole built-in suite", len(r.Results))
	}
}

// A failed test says why: the failing expression with the values of its
// operands, and the trace.
func TestRunTestsExplainsFailure(t *testing.T) {
	dir := copyDefault(t, "authz_test.rego", [][2]string{
		{`d.headers == {"x-keygate-concurrency": concurrency("pro")}`, `d.headers == {"x-keygate-concurrency": "7"}`},
	})
	r := runDirTests(t, dir)
	if r.Failed() != 1 {
		t.Fatalf("%d failed, want 1", r.Failed())
	}
	for _, res := range r.Results {
		if res.Pass {
			if res.Failure != "" || res.Trace != "" {
				t.Errorf("%s passed but carries failure detail", res.Name)
			}
			continue
		}
		for _, want := range []string{
			"authz_test.rego:",                          // where
			`{"x-keygate-concurrency": "7"}`,            // expected
			`d.headers: {"x-keygate-concurrency": "3"}`, // actual
		} {
			if !strings.Contains(res.Failure, want) {
				t.Errorf("failure of %s lacks %q:\n%s", res.Name, want, res.Failure)
			}
		}
		if !strings.Contains(res.Trace, "Enter data.keygate.authz_test.test_pro_key_allowed_with_concurrency") {
			t.Errorf("trace of %s does not start at the test:\n%.400s", res.Name, res.Trace)
		}
	}
}

func TestInitLayer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mypolicy")
	files, err := InitLayer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Fatalf("wrote %v", files)
	}
	b, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Extends != BuiltIn {
		t.Fatalf("extends %q, want %q", b.Extends, BuiltIn)
	}
	r, err := RunTests(context.Background(), b, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Err(); err != nil || len(r.Results) < 2 {
		t.Fatalf("%d tests, err %v", len(r.Results), err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "data.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Every top-level setting of the built-in config is there, commented.
	for _, key := range []string{"plans:", "routes:", "credentials:", "mode_headers:", "host_modes:", "strip_credentials:", "errors:", "public_errors:", "body_shape:", "limits:"} {
		if !strings.Contains(string(data), "    # "+key) {
			t.Errorf("data.yaml lacks the commented setting %q", key)
		}
	}
	if _, err := InitLayer(dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("second init into the same directory: %v, want a refusal", err)
	}
}

// Uncommenting one setting of the skeleton is all it takes to change it.
func TestInitLayerUncommented(t *testing.T) {
	dir := t.TempDir()
	if _, err := InitLayer(dir); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "data.yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(data), "config: {}", "config:", 1)
	s = strings.Replace(s, "    # body_shape: code_message", "    body_shape: message", 1)
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.Documents["keygate"].(map[string]any)["config"].(map[string]any)
	if cfg["body_shape"] != "message" || cfg["plans"] == nil {
		t.Fatalf("body_shape %v, plans %v: the layer must change body_shape and keep the built-in rest", cfg["body_shape"], cfg["plans"])
	}
}
