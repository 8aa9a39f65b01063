package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// policy init writes a layer that policy test passes, refuses to overwrite
// it, and a broken test says what it expected and what it got.
func TestPolicyInitAndFailureDetail(t *testing.T) {
	c := newCLI(t)
	dir := filepath.Join(c.dir, "mypolicy")
	out := c.must("policy", "init", dir)
	if !strings.Contains(out, "wrote "+filepath.Join(dir, "data.yaml")) {
		t.Fatalf("policy init: %s", out)
	}
	if out := c.must("policy", "test", dir); !strings.HasSuffix(out, "\n2 passed, 0 failed\n") {
		t.Fatalf("policy test of the skeleton: %q", out)
	}
	if _, errOut, code := c.run("policy", "init", dir); code == 0 || !strings.Contains(errOut, "not empty") {
		t.Fatalf("second init: exit %d, %s", code, errOut)
	}
	broken := "package keygate.layer_test\n\nimport rego.v1\n\nimport data.keygate.authz\n\n" +
		"test_broken if {\n\tx := data.keygate.config.plans.pro.concurrency\n\tx == 99\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "broken_test.rego"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code := c.run("policy", "test", dir)
	if code != 1 {
		t.Fatalf("broken test: exit %d", code)
	}
	for _, want := range []string{"FAIL data.keygate.layer_test.test_broken", "broken_test.rego:9:", "x == 99", "\n2 passed, 1 failed\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("policy test output lacks %q:\n%s", want, out)
		}
	}
	// The operand's value (x is 3) is printed under it.
	if !regexp.MustCompile(`x == 99\s*\n\s*\|\s*\n\s*3\n`).MatchString(out) {
		t.Errorf("policy test output does not show x's value 3:\n%s", out)
	}
}
