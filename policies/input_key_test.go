package policies

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// withEntitlements gives in's key every entitlement and the request a
// client address.
func withEntitlements(in *Input) {
	four := int64(4)
	in.Key.Scopes, in.Key.AllowedCIDRs = []string{"videos:read"}, []string{"10.0.0.0/8"}
	in.Key.Meta, in.Key.Limits, in.Key.Remaining = map[string]string{"tier": "gold"}, map[string]int64{"rate": 3}, &four
	in.Request.ClientAddress = "10.0.0.1"
}

// TestInputEntitlements pins how a key's entitlements and the client
// address reach the policy, and that they are absent when empty.
func TestInputEntitlements(t *testing.T) {
	in := fullInput()
	withEntitlements(&in)
	got, err := in.AsMap()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "key_1", "mode": "live", "name": "n", "revoked": false, "expired": false,
		"scopes": []any{"videos:read"}, "allowed_cidrs": []any{"10.0.0.0/8"}, "meta": map[string]any{"tier": "gold"},
		"limits": map[string]any{"rate": json.Number("3")}, "remaining": json.Number("4")}
	if diff := cmp.Diff(want, got["key"]); diff != "" {
		t.Fatalf("input.key (-want +got):\n%s", diff)
	}
	if a := got["request"].(map[string]any)["client_address"]; a != "10.0.0.1" {
		t.Fatalf("client_address = %v", a)
	}
	zero := int64(0)
	in.Key.Scopes, in.Key.AllowedCIDRs, in.Key.Meta, in.Key.Limits, in.Key.Remaining = []string{}, nil, map[string]string{}, nil, &zero
	in.Request.ClientAddress = ""
	got, _ = in.AsMap()
	want = map[string]any{"id": "key_1", "mode": "live", "name": "n", "revoked": false, "expired": false, "remaining": json.Number("0")}
	if diff := cmp.Diff(want, got["key"]); diff != "" {
		t.Fatalf("empty entitlements (-want +got):\n%s", diff)
	}
	if _, ok := got["request"].(map[string]any)["client_address"]; ok {
		t.Fatal("client_address present though empty")
	}
}

// TestEntitlementsDecideThroughTheMemo: the built-in policy decides a
// scoped key by its scopes whether or not the memo answers, and never
// hands an unscoped key's remembered allow to a scoped key.
func TestEntitlementsDecideThroughTheMemo(t *testing.T) {
	e := NewEngine(defaultPolicy(t))
	ctx := context.Background()
	in := fullInput()
	in.Request.Path, in.Request.Headers = "/v1/videos/1", nil
	in.Request.Method = "POST"
	for i, scopes := range [][]string{nil, {"videos:read"}, nil, {"videos:read"}, {"videos:*"}} {
		in.Key.Scopes = scopes
		for range 2 {
			d, err := e.Decide(ctx, &in)
			if err != nil {
				t.Fatal(err)
			}
			if want := scopes == nil || scopes[0] == "videos:*"; d.Allow != want {
				t.Fatalf("step %d, scopes %v: allow %v (%s)", i, scopes, d.Allow, d.Code)
			}
		}
	}
}
