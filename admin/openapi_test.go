package admin_test

import (
	"net/http"
	"sort"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/openapitest"
)

// TestOpenAPIConformance drives every admin route through a client whose
// every request and answer is validated against the OpenAPI document
// (kin-openapi), and fails if the handler serves a route the document
// lacks or the document describes one nobody serves.
func TestOpenAPIConformance(t *testing.T) {
	f := newFixture(t)
	c := openapitest.New(t, admin.OpenAPI, f.srv.URL)
	http.DefaultClient.Transport, f.srv.Client().Transport = c, c
	t.Cleanup(func() { http.DefaultClient.Transport = nil })

	wh := f.must("POST", "/admin/v1/webhooks", `{"url":"https://hooks.example.com/k","events":["key.created","key.revoked"],"description":"ops"}`, 201)
	f.must("POST", "/admin/v1/accounts", `{"id":"acme","plan":"pro","status":"trialing"}`, 201)
	f.must("POST", "/admin/v1/accounts", `{"id":"beta","plan":"plus"}`, 201)
	f.must("GET", "/admin/v1/accounts?limit=1", "", 200)
	f.must("GET", "/admin/v1/accounts?after=acme", "", 200)
	f.must("GET", "/admin/v1/accounts/acme", "", 200)
	f.must("PATCH", "/admin/v1/accounts/acme", `{"plan":"max","status":"active"}`, 200)
	f.must("PUT", "/admin/v1/accounts/acme/limits", `{"quota":0}`, 200)
	f.must("GET", "/admin/v1/accounts/acme/limits", "", 200)
	f.must("POST", "/admin/v1/sites", `{"id":"web","account":"acme","domains":["acme.com"],"active":true}`, 201)
	f.must("GET", "/admin/v1/sites", "", 200)
	f.must("GET", "/admin/v1/sites?account=acme&limit=1", "", 200)
	f.must("GET", "/admin/v1/sites/web", "", 200)
	f.must("PATCH", "/admin/v1/sites/web", `{"domains":["a.com","*.b.com"],"active":true}`, 200)
	f.must("PUT", "/admin/v1/sites/web/limits", `{"rate":600,"burst":10}`, 200)
	f.must("GET", "/admin/v1/sites/web/limits", "", 200)
	f.must("GET", "/admin/v1/sites/web/usage", "", 200)
	f.must("GET", "/admin/v1/sites/web/usage?month=2026-01", "", 200)
	k := f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"live","name":"prod","expires_at":"2999-01-01T00:00:00Z"}`, 201)
	f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"test"}`, 201)
	f.must("POST", "/admin/v1/keys/import", `{"site":"web","mode":"live","key":"legacy-0123456789abcdef"}`, 201)
	f.must("GET", "/admin/v1/keys?site=web", "", 200)
	f.must("GET", "/admin/v1/keys?site=web&limit=1", "", 200)
	f.must("GET", "/admin/v1/keys/"+k.body["id"].(string), "", 200)
	ek := f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"live","scopes":["videos:read","*:read"],"allowed_cidrs":["10.0.0.0/8","2001:db8::/32"],
		"meta":{"tier":"gold"},"limits":{"rate":5,"burst":10},"remaining":3,"refill":{"interval":"monthly","amount":3}}`, 201)
	ekID := ek.body["id"].(string)
	f.must("PATCH", "/admin/v1/keys/"+ekID, `{"name":"dash","scopes":["videos:write"],"meta":{"tier":null,"ref":"x"},"limits":{"rate":null,"quota":9},"remaining":5}`, 200)
	f.must("PATCH", "/admin/v1/keys/"+ekID, `{"allowed_cidrs":null,"limits":null,"refill":null}`, 200)
	f.must("GET", "/admin/v1/keys/"+ekID, "", 200)
	f.must("POST", "/admin/v1/keys/"+ekID+"/roll", `{"grace":"1h"}`, 201)
	f.must("POST", "/admin/v1/sites/web/rotate-key", `{"mode":"test","grace":"1h"}`, 201)
	f.must("POST", "/admin/v1/sites/web/rotate-key", "", 201)
	f.must("POST", "/admin/v1/keys/"+k.body["id"].(string)+"/revoke", "", 200)
	whID := wh.body["id"].(string)
	f.must("GET", "/admin/v1/webhooks", "", 200)
	f.must("GET", "/admin/v1/webhooks/"+whID, "", 200)
	ds := f.must("GET", "/admin/v1/webhooks/"+whID+"/deliveries?limit=10", "", 200)
	if list, _ := ds.body["deliveries"].([]any); len(list) > 0 {
		d := list[0].(map[string]any)
		f.must("POST", "/admin/v1/webhooks/"+whID+"/deliveries/"+d["id"].(string)+"/retry", "", 200)
	} else {
		t.Error("no webhook deliveries for the keys created")
	}
	f.must("PATCH", "/admin/v1/webhooks/"+whID, `{"rotate_secret":true,"description":"ops2"}`, 200)
	f.must("DELETE", "/admin/v1/webhooks/"+whID, "", 200)
	f.must("GET", "/admin/v1/audit?limit=2", "", 200)
	f.must("GET", "/admin/v1/audit?target=acme&after=0", "", 200)
	if a := f.call("GET", "/admin/v1/openapi.json", ""); a.status != 200 || a.body["openapi"] != "3.1.0" {
		t.Errorf("GET /admin/v1/openapi.json: %d", a.status)
	}

	// Errors have their documented shape too.
	for _, e := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/admin/v1/accounts", `{"id":"acme","plan":"pro"}`, 409},
		{"POST", "/admin/v1/accounts", `{"id":"x","plan":"platinum"}`, 400},
		{"PATCH", "/admin/v1/accounts/nope", `{"plan":"pro"}`, 404},
		{"GET", "/admin/v1/sites/nope", "", 404},
		{"GET", "/admin/v1/keys/key_nope", "", 404},
		{"GET", "/admin/v1/keys?site=web&limit=5000", "", 400},
		{"PUT", "/admin/v1/sites/web/limits", `{"speed":1}`, 400},
		{"POST", "/admin/v1/sites/web/rotate-key", `{"mode":"prod"}`, 400},
		{"PATCH", "/admin/v1/keys/key_nope", `{"name":"x"}`, 404},
		{"POST", "/admin/v1/keys/key_nope/roll", "", 404},
	} {
		if a := f.call(e.method, e.path, e.body); a.status != e.status {
			t.Errorf("%s %s %s: %d, want %d: %s", e.method, e.path, e.body, a.status, e.status, a.raw)
		}
	}
	if a := f.call("GET", "/admin/v1/accounts", "", "Bearer wrong-token"); a.status != 401 || a.body["code"] != "UNAUTHORIZED" {
		t.Errorf("wrong token: %d %s", a.status, a.raw)
	}

	// The routes served and the operations documented are the same set.
	served := map[string]bool{}
	for _, r := range (&admin.Handler{}).Routes() {
		served[r] = true
		if !c.Driven[r] {
			t.Errorf("route %s is served but the test did not drive it through the document (is it documented?)", r)
		}
	}
	doc, _ := openapi3.NewLoader().LoadFromData(admin.OpenAPI)
	var documented []string
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if len(op.Tags) > 0 && (op.Tags[0] == "tokens" || op.Tags[0] == "customer") {
				continue // served on --http-addr: tests/tokens_openapi_test.go, customer/openapi_test.go
			}
			documented = append(documented, method+" "+path)
		}
	}
	sort.Strings(documented)
	for _, d := range documented {
		if !served[d] {
			t.Errorf("the document describes %s, which the admin handler does not serve", d)
		}
	}
	if len(documented) != len(served) {
		t.Errorf("%d documented admin operations, %d served routes", len(documented), len(served))
	}
}
