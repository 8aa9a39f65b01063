// Package policytest compiles the policies that other packages' tests
// decide with: the built-in policy, a deployment profile of
// policies/examples, or either with its config changed. Only tests import
// it.
package policytest

import (
	"context"
	"testing"

	"github.com/keygate/keygate/policies"
)

// Compile loads dir, or the built-in policy when dir is "" or
// policies.BuiltIn, lets tune (when not nil) change its config, and
// compiles it. A policy that does not load or compile fails the test.
func Compile(t testing.TB, dir string, tune func(config map[string]any)) *policies.Policy {
	t.Helper()
	var b *policies.Bundle
	var err error
	if dir == "" || dir == policies.BuiltIn {
		b, err = policies.Load(policies.Default(), policies.BuiltIn)
	} else {
		b, err = policies.LoadDir(dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(b.Documents["keygate"].(map[string]any)["config"].(map[string]any))
	}
	p, err := policies.Compile(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
