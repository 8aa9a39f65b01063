package tests

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCustomerWritesEmitWebhooks: a dashboard session creates, revokes and
// rotates through the binary's customer API, and the platform's receiver
// gets key.created, key.revoked and site.keys_rotated for them, each
// signed (verified with the Standard Webhooks Go library) and in order; a
// refused cross-account attempt emits nothing.
func TestCustomerWritesEmitWebhooks(t *testing.T) {
	idp := newIdentityProvider(t)
	env := NewEnv(t)
	rcv := newHookReceiver(t)
	rcv.subscribe(env, rcv.srv.URL+"/hook", "key.created", "key.revoked", "site.keys_rotated")
	_, bKeyID := seedAccounts(env)
	s := env.Serve(append(idp.flags(), "--allow-http-webhooks")...)
	a := idp.sign(idp.ec, idp.claims("acc_a"))

	call := func(method, path, body string, status int) map[string]any {
		t.Helper()
		c := s.Customer(t, a, method, path, body)
		if c.status != status {
			t.Fatalf("%s %s: %d %s, want %d", method, path, c.status, c.raw, status)
		}
		return c.body
	}
	first := call("POST", "/v1/api-keys", `{"site":"site_a","mode":"live","name":"backend"}`, 201)["id"].(string)
	call("POST", "/v1/api-keys/"+first+"/revoke", "", 200)
	second := call("POST", "/v1/api-keys", `{"site":"site_a","mode":"test","name":"ci"}`, 201)["id"].(string)
	if c := s.Customer(t, a, "POST", "/v1/api-keys/"+bKeyID+"/revoke", ""); c.status != 404 {
		t.Fatalf("A revoking B's key: %d %s", c.status, c.raw)
	}
	rotated := call("POST", "/v1/sites/site_a/rotate-key", "", 201)
	third := rotated["id"].(string)

	want := []string{
		"key.created " + first, "key.revoked " + first,
		"key.created " + second,
		"key.revoked " + second, "key.created " + third, "site.keys_rotated " + third,
	}
	var got []hookEvent
	Eventually(t, 30*time.Second, "the session's events at the receiver", func() bool {
		got = nil
		for _, e := range rcv.events(t) {
			if e.Data.Site == "site_a" {
				got = append(got, e)
			}
		}
		return len(got) >= len(want)
	})
	var order []string
	for _, e := range got {
		subject := e.Data.ID
		if e.Type == "site.keys_rotated" {
			subject = e.Data.NewKeyID
		}
		order = append(order, e.Type+" "+subject)
		if e.Data.Account != "acc_a" {
			t.Errorf("%s %s: account %q, want acc_a", e.Type, subject, e.Data.Account)
		}
	}
	if !slices.Equal(order, want) {
		t.Fatalf("events for site_a:\n got %v\nwant %v", order, want)
	}
	if got[1].Data.Reason != "revoked" || got[3].Data.Reason != "rotated" {
		t.Errorf("revocation reasons %q, %q; want revoked, rotated", got[1].Data.Reason, got[3].Data.Reason)
	}
	if r := got[5].Data.RevokedKeyIDs; len(r) != 1 || r[0] != second {
		t.Errorf("site.keys_rotated revoked_key_ids %v, want [%s]", r, second)
	}
	// B's key: created by the operator's CLI, never revoked by A.
	for _, e := range rcv.events(t) {
		if e.Data.ID == bKeyID && e.Type != "key.created" {
			t.Errorf("A's refused attempt emitted %s for B's key", e.Type)
		}
	}
	if strings.Contains(s.Logs(), "delivery failed") {
		t.Errorf("deliveries failed:\n%s", s.Logs())
	}
}

// TestCustomerErrorsTakeTheProfilesShape: through the binary, the customer
// API's refusals are the running profile's denials: VideoGen's
// {"message"} bodies (its "Unauthorized" for a bad session) and
// api.video's RFC 9457 problem details as application/problem+json.
func TestCustomerErrorsTakeTheProfilesShape(t *testing.T) {
	idp := newIdentityProvider(t)
	env := NewEnv(t)
	_, bKeyID := seedAccounts(env)
	a := idp.sign(idp.rsa, idp.claims("acc_a"))
	for _, tc := range []struct {
		profile, contentType           string
		noSession, foreign, badRequest string
	}{
		{"videogen", "application/json", `{"message":"Unauthorized"}`, `{"message":"Not found"}`,
			`{"detail":"\"mode\" must be \"live\" or \"test\"","message":"The request is invalid"}`},
		{"apivideo", "application/problem+json",
			`{"detail":"The session token is invalid or missing","status":401,"title":"The session token is invalid or missing","type":"https://docs.api.video/reference/invalid-token"}`,
			`{"detail":"Not found","status":404,"title":"Not found","type":"https://docs.api.video/reference/not-found"}`,
			`{"detail":"\"mode\" must be \"live\" or \"test\"","status":400,"title":"The request is invalid","type":"https://docs.api.video/reference/invalid-request"}`},
	} {
		t.Run(tc.profile, func(t *testing.T) {
			s := env.Serve(append(idp.flags(), "--policies", profileDir(tc.profile))...)
			for _, c := range []struct {
				token, method, path, body string
				status                    int
				want                      string
			}{
				{"", "GET", "/v1/api-keys", "", 401, tc.noSession},
				{a, "POST", "/v1/api-keys/" + bKeyID + "/revoke", "", 404, tc.foreign},
				{a, "POST", "/v1/api-keys", `{"site":"site_a","mode":"prod"}`, 400, tc.badRequest},
			} {
				auth := map[string]string{}
				if c.token != "" {
					auth["Authorization"] = "Bearer " + c.token
				}
				status, header, raw := send(t, c.method, "http://"+s.HTTPAddr+c.path, c.body, auth)
				if status != c.status || header.Get("Content-Type") != tc.contentType || string(raw) != c.want {
					t.Errorf("%s %s: %d %s %s\nwant %d %s %s", c.method, c.path, status, header.Get("Content-Type"), raw,
						c.status, tc.contentType, c.want)
				}
			}
		})
	}
}
