package customer

import (
	"testing"

	"github.com/keygate/keygate/policies"
)

// TestEveryRefusalHasABuiltinRow: every name the customer API refuses with
// is a row of the built-in policy's config.errors, so a policy lacking one
// still gets a real answer (never the bare 500 extauthz.Deny gives an
// unknown name), and each row has the status its meaning needs.
func TestEveryRefusalHasABuiltinRow(t *testing.T) {
	want := map[string]int{denySession: 401, denyReadOnly: 403, denyNotFound: 404, denyInvalid: 400,
		denyConflict: 409, denyRateLimited: 429, denyUnavailable: 503, denyInternal: 500}
	if len(want) != len(refusalNames) {
		t.Fatalf("refusalNames has %d names, this test knows %d", len(refusalNames), len(want))
	}
	for _, name := range refusalNames {
		d, ok := policies.BuiltinDenial(name)
		if !ok {
			t.Errorf("%s: no row in policies/default/data.yaml config.errors", name)
			continue
		}
		if d.Status != want[name] {
			t.Errorf("%s: status %d, want %d", name, d.Status, want[name])
		}
	}
}
