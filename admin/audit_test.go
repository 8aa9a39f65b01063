package admin_test

import (
	"net/http"
	"testing"
)

// botToken is a second, named admin token of the fixture.
const botToken = "bot-token-0123456789abcdef"

// TestAudit: writes made with a named token are audited under its name,
// the default token as "admin"; the trail pages with after/next and filters
// by target.
func TestAudit(t *testing.T) {
	f := newFixture(t)
	f.must("POST", "/admin/v1/accounts", `{"id":"acme","plan":"pro"}`, http.StatusCreated)
	f.must("POST", "/admin/v1/sites", `{"id":"acme-web","account":"acme"}`, http.StatusCreated)
	rot := f.call("POST", "/admin/v1/sites/acme-web/rotate-key", `{"mode":"live"}`, "Bearer "+botToken)
	if rot.status != http.StatusOK && rot.status != http.StatusCreated {
		t.Fatalf("rotate: %d %s", rot.status, rot.raw)
	}
	keyID, _ := rot.body["id"].(string)
	if keyID == "" {
		t.Fatalf("rotate answered %s", rot.raw)
	}

	got := f.must("GET", "/admin/v1/audit?target="+keyID, "", http.StatusOK)
	entries, _ := got.body["entries"].([]any)
	if len(entries) != 1 {
		t.Fatalf("entries for %s: %s", keyID, got.raw)
	}
	e := entries[0].(map[string]any)
	if e["actor"] != "admin:deploy-bot" || e["action"] != "rotate key" || e["target"] != keyID || e["before"] != nil {
		t.Errorf("rotate entry %v", e)
	}

	first := f.must("GET", "/admin/v1/audit?limit=1", "", http.StatusOK)
	page, _ := first.body["entries"].([]any)
	if len(page) != 1 || page[0].(map[string]any)["actor"] != "admin:admin" || first.body["next"] == nil {
		t.Fatalf("first page %s", first.raw)
	}
	rest := f.must("GET", "/admin/v1/audit?after="+first.body["next"].(string), "", http.StatusOK)
	if n := len(rest.body["entries"].([]any)); n != 2 {
		t.Errorf("after the first entry: %d entries (%s)", n, rest.raw)
	}
	for _, bad := range []string{"?limit=0", "?limit=1001", "?after=-1", "?after=x"} {
		f.must("GET", "/admin/v1/audit"+bad, "", http.StatusBadRequest)
	}
	if a := f.call("GET", "/admin/v1/audit", "", "Bearer "+botToken+"x"); a.status != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", a.status)
	}
}
