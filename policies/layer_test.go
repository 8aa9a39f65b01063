package policies

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMergeData(t *testing.T) {
	base := map[string]any{"a": map[string]any{"x": 1, "y": []any{1, 2}, "z": "keep"}, "b": "old", "gone": true}
	top := map[string]any{"a": map[string]any{"x": 2, "y": []any{3}}, "b": map[string]any{"now": "object"}, "gone": nil, "new": 1}
	want := map[string]any{"a": map[string]any{"x": 2, "y": []any{3}, "z": "keep"}, "b": map[string]any{"now": "object"}, "new": 1}
	if diff := cmp.Diff(want, mergeData(base, top)); diff != "" {
		t.Errorf("merge (-want +got):\n%s", diff)
	}
	if base["b"] != "old" || base["gone"] != true {
		t.Error("mergeData modified its input")
	}
}

// writeFiles writes name → content under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const layerData = "keygate:\n  extends: built-in\n  config:\n    plans:\n      pro: {concurrency: 4}\n    body_shape: message\n"

func TestLoadDirLayered(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"data.yaml":       layerData,
		"extra.rego":      "package keygate.extra\n\nimport rego.v1\n\nx := 1\n",
		"extra_test.rego": "package keygate.extra_test\n\nimport rego.v1\n\ntest_x if data.keygate.extra.x == 1\n",
	})
	b, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for name := range b.Modules {
		files = append(files, name)
	}
	if diff := cmp.Diff([]string{"authz.rego", "entitlements.rego", "extra.rego", "extra_test.rego", "limits.rego", "response.rego"}, slices.Sorted(slices.Values(files))); diff != "" {
		t.Errorf("modules (-want +got):\n%s", diff)
	}
	cfg := b.Documents["keygate"].(map[string]any)["config"].(map[string]any)
	pro := cfg["plans"].(map[string]any)["pro"].(map[string]any)
	if fmt.Sprint(pro["concurrency"]) != "4" || pro["api"] != true || cfg["body_shape"] != "message" {
		t.Errorf("data not merged over the built-in: pro=%v body_shape=%v", pro, cfg["body_shape"])
	}
	if b.Extends != BuiltIn {
		t.Errorf("Extends = %q", b.Extends)
	}
}

func TestLoadDirReplacesBuiltinFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"data.yaml":     layerData,
		"response.rego": strings.Replace(builtinFile(t, "response.rego"), `{"message": e.message}`, `{"msg": e.message}`, 1),
	})
	b, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewEngine(p).Decide(context.Background(), &Input{Request: Request{Path: "/v1/x", PathOK: true}, Credential: Credential{Status: CredMissing}})
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Body) != `{"msg":"No API key provided in the request"}` {
		t.Errorf("body = %s, want the replaced response.rego's shape", d.Body)
	}
}

func TestLoadDirWholePolicy(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": "package keygate.authz\n\nimport rego.v1\n\ndecision := {\"allow\": true}\n"})
	b, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Modules) != 1 || b.Extends != "" {
		t.Errorf("a directory without keygate.extends must stand alone, got %d modules, extends %q", len(b.Modules), b.Extends)
	}
}

func TestLoadDirBadExtends(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"data.yaml": "keygate:\n  extends: ../other\n"})
	if _, err := LoadDir(dir); err == nil {
		t.Fatal("want an error for an unknown keygate.extends")
	}
}

func builtinFile(t *testing.T, name string) string {
	t.Helper()
	b, err := embedded.ReadFile("default/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
