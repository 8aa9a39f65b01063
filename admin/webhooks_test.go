package admin_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/webhooks"
)

func TestWebhooks(t *testing.T) {
	f := seededFixture(t)
	// Production rules: https and public addresses only.
	for _, body := range []string{
		`{"url":"http://hooks.example.com/k","events":["key.created"]}`,
		`{"url":"https://127.0.0.1/k","events":["key.created"]}`,
		`{"url":"https://169.254.169.254/latest","events":["key.created"]}`,
		`{"url":"https://hooks.example.com/k","events":["key.nope"]}`,
		`{"url":"https://hooks.example.com/k","events":[]}`,
		`{"url":"https://hooks.example.com/k"}`,
		`{"events":["key.created"]}`,
		`{"url":"https://hooks.example.com/k","events":["key.created"],"rotate_secret":true}`,
	} {
		a := f.call("POST", "/admin/v1/webhooks", body)
		if a.status != 400 || a.body["code"] != "INVALID_REQUEST" {
			t.Errorf("POST %s: %d %s", body, a.status, a.raw)
		}
	}
	a := f.must("POST", "/admin/v1/webhooks", `{"url":"https://hooks.example.com/k","events":["key.revoked","key.created"],"description":"ops"}`, 201)
	id, _ := a.body["id"].(string)
	secret, _ := a.body["secret"].(string)
	if !strings.HasPrefix(id, "wh_") || webhooks.ValidSecret(secret) != nil || a.body["description"] != "ops" {
		t.Fatalf("created %s", a.raw)
	}
	// The secret is shown once.
	for _, path := range []string{"/admin/v1/webhooks", "/admin/v1/webhooks/" + id} {
		if got := f.must("GET", path, "", 200); strings.Contains(got.raw, secret) || strings.Contains(got.raw, "secret\"") {
			t.Errorf("GET %s shows the secret: %s", path, got.raw)
		}
	}
	list := f.must("GET", "/admin/v1/webhooks", "", 200)
	if eps, _ := list.body["webhooks"].([]any); len(eps) != 1 {
		t.Fatalf("list %s", list.raw)
	}
	// A key created now is queued for the endpoint.
	key := f.must("POST", "/admin/v1/keys", `{"site":"web","mode":"live"}`, 201)
	ds := f.must("GET", "/admin/v1/webhooks/"+id+"/deliveries", "", 200)
	items, _ := ds.body["deliveries"].([]any)
	if len(items) != 1 {
		t.Fatalf("deliveries %s", ds.raw)
	}
	d := items[0].(map[string]any)
	if d["type"] != "key.created" || d["status"] != "pending" || strings.Contains(ds.raw, key.body["key"].(string)) {
		t.Fatalf("delivery %s", ds.raw)
	}
	r := f.must("POST", "/admin/v1/webhooks/"+id+"/deliveries/"+d["id"].(string)+"/retry", "", 200)
	if r.body["status"] != "pending" {
		t.Fatalf("retry %s", r.raw)
	}
	f.must("POST", "/admin/v1/webhooks/"+id+"/deliveries/dlv_nope/retry", "", 404)
	f.must("GET", "/admin/v1/webhooks/"+id+"/deliveries?limit=0", "", 400)

	// Rotation: a new secret, the old one signs for 24 hours more.
	p := f.must("PATCH", "/admin/v1/webhooks/"+id, `{"rotate_secret":true,"description":"ops2"}`, 200)
	newSecret, _ := p.body["secret"].(string)
	if webhooks.ValidSecret(newSecret) != nil || newSecret == secret || p.body["previous_secret_until"] == nil || p.body["description"] != "ops2" {
		t.Fatalf("rotate %s", p.raw)
	}
	due, err := f.store.DueDeliveries(context.Background(), time.Now(), 10)
	if err != nil || len(due) != 1 || len(due[0].Secrets) != 2 || due[0].Secrets[0] != newSecret || due[0].Secrets[1] != secret {
		t.Fatalf("due during rotation: %+v, %v", due, err)
	}
	f.must("PATCH", "/admin/v1/webhooks/"+id, `{"url":"http://hooks.example.com"}`, 400)
	f.must("PATCH", "/admin/v1/webhooks/"+id, `{"events":["nope"]}`, 400)
	f.must("PATCH", "/admin/v1/webhooks/wh_nope", `{"disabled":true}`, 404)
	f.must("GET", "/admin/v1/webhooks/wh_nope", "", 404)
	f.must("DELETE", "/admin/v1/webhooks/"+id, "", 200)
	f.must("DELETE", "/admin/v1/webhooks/"+id, "", 404)
	f.must("GET", "/admin/v1/webhooks/"+id+"/deliveries", "", 404)
	if got := f.call("GET", "/admin/v1/webhooks", "", ""); got.status != 401 {
		t.Fatalf("no token: %d", got.status)
	}
}
