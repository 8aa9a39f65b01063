package admin_test

import (
	"strings"
	"testing"
	"time"
)

func TestKeyEntitlementsAdmin(t *testing.T) {
	f := seededFixture(t)
	k := f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"live","scopes":["videos:read"],"allowed_cidrs":["10.1.2.3/8"],
		"meta":{"tier":"gold"},"limits":{"rate":5},"remaining":3,"refill":{"interval":"daily","amount":3}}`, 201)
	id, secret := k.body["id"].(string), k.body["key"].(string)
	if got := k.body["allowed_cidrs"].([]any); len(got) != 1 || got[0] != "10.0.0.0/8" {
		t.Errorf("allowed_cidrs stored as %v", got)
	}
	g := f.must("GET", "/admin/v1/keys/"+id, "", 200)
	if g.body["remaining"] != float64(3) || g.body["meta"].(map[string]any)["tier"] != "gold" || strings.Contains(g.raw, secret) {
		t.Errorf("GET %s", g.raw)
	}
	if l := f.must("GET", "/admin/v1/keys?site=web", "", 200); !strings.Contains(l.raw, `"scopes":["videos:read"]`) || strings.Contains(l.raw, secret) {
		t.Errorf("listing %s", l.raw)
	}

	u := f.must("PATCH", "/admin/v1/keys/"+id, `{"scopes":["videos:read","videos:write"],"meta":{"tier":null,"ref":"cus-1"},"limits":{"quota":7}}`, 200)
	if !strings.Contains(u.raw, `"scopes":["videos:read","videos:write"]`) || !strings.Contains(u.raw, `"meta":{"ref":"cus-1"}`) ||
		!strings.Contains(u.raw, `"limits":{"quota":7,"rate":5}`) || u.body["remaining"] != float64(3) {
		t.Errorf("PATCH merge %s", u.raw)
	}
	u = f.must("PATCH", "/admin/v1/keys/"+id, `{"scopes":null,"allowed_cidrs":[],"meta":null,"limits":null,"remaining":null}`, 200)
	for _, field := range []string{"scopes", "allowed_cidrs", "meta", "limits", "remaining", "refill"} {
		if _, ok := u.body[field]; ok {
			t.Errorf("PATCH null left %s: %s", field, u.raw)
		}
	}

	for _, tc := range []struct{ method, path, body, field string }{
		{"POST", "/admin/v1/keys", `{"site":"web","mode":"live","scopes":["Videos:read"]}`, "scopes"},
		{"POST", "/admin/v1/keys", `{"site":"web","mode":"live","allowed_cidrs":["10.0.0.0/33"]}`, "allowed_cidrs"},
		{"POST", "/admin/v1/keys", `{"site":"web","mode":"live","meta":{"Tier":"x"}}`, "meta"},
		{"POST", "/admin/v1/keys", `{"site":"web","mode":"live","meta":{"tier":"a\nb"}}`, "meta"},
		{"POST", "/admin/v1/keys", `{"site":"web","mode":"live","remaining":-1}`, "remaining"},
		{"POST", "/admin/v1/keys", `{"site":"web","mode":"live","remaining":1,"refill":{"interval":"hourly","amount":1}}`, "refill"},
		{"POST", "/admin/v1/keys", `{"site":"web","mode":"live","limits":{"speed":1}}`, "limits.speed"},
		{"POST", "/admin/v1/keys", `{"site":"web","mode":"live","scopes":"videos:read"}`, "scopes"},
		{"POST", "/admin/v1/keys/import", `{"site":"web","mode":"live","key":"legacy-0123456789abcdef","scopes":["x"]}`, "scopes"},
		{"PATCH", "/admin/v1/keys/" + id, `{"allowed_cidrs":["nope"]}`, "allowed_cidrs"},
		{"PATCH", "/admin/v1/keys/" + id, `{"refill":{"interval":"daily","amount":2}}`, "refill"},
		{"PATCH", "/admin/v1/keys/" + id, `{"remaining":"3"}`, "remaining"},
		{"PATCH", "/admin/v1/keys/" + id, `{"limits":{"speed":1}}`, "limits.speed"},
		{"PATCH", "/admin/v1/keys/" + id, `{"secret":"x"}`, "secret"},
		{"PATCH", "/admin/v1/keys/" + id, `{}`, ""},
		{"POST", "/admin/v1/keys/" + id + "/roll", `{"grace":"forever"}`, "grace"},
		{"POST", "/admin/v1/keys/" + id + "/roll", `{"grace":"-1h"}`, "grace"},
		{"POST", "/admin/v1/keys/" + id + "/roll", `{"grace":"721h"}`, "grace"},
	} {
		a := f.call(tc.method, tc.path, tc.body)
		if a.status != 400 || a.body["code"] != "INVALID_REQUEST" || (tc.field != "" && a.body["field"] != tc.field) {
			t.Errorf("%s %s %s: %d %s, want 400 naming %q", tc.method, tc.path, tc.body, a.status, a.raw, tc.field)
		}
	}
}

func TestKeyRollAdmin(t *testing.T) {
	f := seededFixture(t)
	k := f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"live","name":"ci","scopes":["videos:read"]}`, 201)
	id := k.body["id"].(string)
	before := time.Now()
	r := f.must("POST", "/admin/v1/keys/"+id+"/roll", `{"grace":"2h"}`, 201)
	if r.body["old_key_id"] != id || r.body["id"] == id || r.body["key"] == "" || r.body["key"] == k.body["key"] ||
		r.body["name"] != "ci" || !strings.Contains(r.raw, `"scopes":["videos:read"]`) {
		t.Fatalf("roll %s", r.raw)
	}
	exp, err := time.Parse(time.RFC3339Nano, r.body["old_expires_at"].(string))
	if d := exp.Sub(before); err != nil || d < 2*time.Hour-time.Minute || d > 2*time.Hour+time.Minute {
		t.Errorf("old key expires %v (%v), want in 2h", exp, err)
	}
	old := f.must("GET", "/admin/v1/keys/"+id, "", 200)
	if old.body["expires_at"] != r.body["old_expires_at"] || old.body["revoked_at"] != nil {
		t.Errorf("old key after roll %s", old.raw)
	}
	// The default grace is 24 h.
	r2 := f.must("POST", "/admin/v1/keys/"+r.body["id"].(string)+"/roll", "", 201)
	exp2, _ := time.Parse(time.RFC3339Nano, r2.body["old_expires_at"].(string))
	if d := exp2.Sub(before); d < 24*time.Hour-time.Minute || d > 24*time.Hour+time.Minute {
		t.Errorf("default grace: old key expires in %s", d)
	}
	f.must("POST", "/admin/v1/keys/"+id+"/revoke", "", 200)
	if a := f.call("POST", "/admin/v1/keys/"+id+"/roll", ""); a.status != 400 {
		t.Errorf("rolling a revoked key: %d %s", a.status, a.raw)
	}
	if a := f.call("POST", "/admin/v1/keys/key_nope/roll", ""); a.status != 404 {
		t.Errorf("rolling a missing key: %d %s", a.status, a.raw)
	}
}
