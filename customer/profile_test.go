package customer_test

import (
	"testing"

	"github.com/keygate/keygate/customer"
	"github.com/keygate/keygate/internal/policytest"
	"github.com/keygate/keygate/policies"
)

// profileEngine is a deployment profile of policies/examples (a layer on
// the built-in policy), optionally changed by tune before it compiles.
func profileEngine(t *testing.T, dir string, tune func(config map[string]any)) *policies.Engine {
	t.Helper()
	return policies.NewEngine(policytest.Compile(t, dir, tune))
}

// TestRefusalsFollowThePolicy: the customer API's refusals take status,
// code, message, body shape and media type from the running policy's
// config.errors, as Check's denials do: VideoGen's {"message"} bodies (and
// its "Unauthorized" for every credential problem), api.video's RFC 9457
// problem details, VibePeak's error objects with the request id, and an
// operator's own row.
func TestRefusalsFollowThePolicy(t *testing.T) {
	type want struct {
		status      int
		contentType string
		body        string
	}
	ownRow := func(config map[string]any) {
		errs := config["errors"].(map[string]any)
		errs["NOT_FOUND"] = map[string]any{"status": 404, "code": "NO_SUCH_THING", "message": "Nothing here"}
		delete(errs, "SESSION_READ_ONLY") // a broken table: the built-in row answers
	}
	for _, tc := range []struct {
		name, dir string
		tune      func(map[string]any)
		missing   want // a foreign key id
		session   want // no session
		invalid   want // a bad body
		viewer    want // a read-only session writing
	}{
		{name: "built-in",
			missing: want{404, "application/json", `{"code":"NOT_FOUND","message":"Not found"}`},
			session: want{401, "application/json", `{"code":"INVALID_TOKEN","message":"The session token is invalid or missing"}`},
			invalid: want{400, "application/json", `{"code":"INVALID_REQUEST","detail":"\"mode\" must be \"live\" or \"test\"","message":"The request is invalid"}`},
			viewer:  want{403, "application/json", `{"code":"INSUFFICIENT_SCOPE","message":"This session may only read"}`}},
		{name: "videogen", dir: "../policies/examples/videogen",
			missing: want{404, "application/json", `{"message":"Not found"}`},
			session: want{401, "application/json", `{"message":"Unauthorized"}`},
			invalid: want{400, "application/json", `{"detail":"\"mode\" must be \"live\" or \"test\"","message":"The request is invalid"}`},
			viewer:  want{403, "application/json", `{"message":"This session may only read"}`}},
		{name: "apivideo", dir: "../policies/examples/apivideo",
			missing: want{404, "application/problem+json", `{"detail":"Not found","status":404,"title":"Not found","type":"https://docs.api.video/reference/not-found"}`},
			session: want{401, "application/problem+json", `{"detail":"The session token is invalid or missing","status":401,"title":"The session token is invalid or missing","type":"https://docs.api.video/reference/invalid-token"}`},
			invalid: want{400, "application/problem+json", `{"detail":"\"mode\" must be \"live\" or \"test\"","status":400,"title":"The request is invalid","type":"https://docs.api.video/reference/invalid-request"}`},
			viewer:  want{403, "application/problem+json", `{"detail":"This session may only read","status":403,"title":"This session may only read","type":"https://docs.api.video/reference/insufficient-scope"}`}},
		{name: "vibepeak", dir: "../policies/examples/vibepeak",
			missing: want{404, "application/json", `{"error":{"code":"NOT_FOUND","message":"Not found","request_id":"req-1"}}`},
			session: want{401, "application/json", `{"error":{"code":"INVALID_TOKEN","message":"The session token is invalid or missing","request_id":"req-1"}}`},
			invalid: want{400, "application/json", `{"detail":"\"mode\" must be \"live\" or \"test\"","error":{"code":"INVALID_REQUEST","message":"The request is invalid","request_id":"req-1"}}`},
			viewer:  want{403, "application/json", `{"error":{"code":"INSUFFICIENT_SCOPE","message":"This session may only read","request_id":"req-1"}}`}},
		{name: "operator's rows", tune: ownRow,
			missing: want{404, "application/json", `{"code":"NO_SUCH_THING","message":"Nothing here"}`},
			session: want{401, "application/json", `{"code":"INVALID_TOKEN","message":"The session token is invalid or missing"}`},
			invalid: want{400, "application/json", `{"code":"INVALID_REQUEST","detail":"\"mode\" must be \"live\" or \"test\"","message":"The request is invalid"}`},
			viewer:  want{403, "application/json", `{"code":"INSUFFICIENT_SCOPE","message":"This session may only read"}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			engine := profileEngine(t, tc.dir, tc.tune)
			f := newFixture(t, func(h *customer.Handler) { h.Policy = engine })
			theirs := f.mustKey("site_b")
			owner := "Bearer " + f.token("acc_a", "owner")
			check := func(what string, a answer, w want) {
				t.Helper()
				if a.status != w.status || a.header.Get("Content-Type") != w.contentType || a.raw != w.body {
					t.Errorf("%s: %d %s %s\nwant %d %s %s", what, a.status, a.header.Get("Content-Type"), a.raw, w.status, w.contentType, w.body)
				}
				if a.header.Get("Cache-Control") != "no-store" {
					t.Errorf("%s: cache-control %q", what, a.header.Get("Cache-Control"))
				}
			}
			rid := []string{"X-Request-Id", "req-1"}
			check("foreign key", f.do("POST", "/v1/api-keys/"+theirs.ID+"/revoke", "", append(rid, "Authorization", owner)...), tc.missing)
			check("missing key", f.do("POST", "/v1/api-keys/key_doesnotexist/revoke", "", append(rid, "Authorization", owner)...), tc.missing)
			a := f.do("GET", "/v1/api-keys", "", rid...)
			check("no session", a, tc.session)
			if a.header.Get("WWW-Authenticate") == "" {
				t.Error("no session: no WWW-Authenticate challenge")
			}
			check("bad body", f.do("POST", "/v1/api-keys", `{"site":"site_a","mode":"prod"}`, append(rid, "Authorization", owner)...), tc.invalid)
			check("viewer", f.do("POST", "/v1/api-keys", `{"site":"site_a","mode":"live"}`, append(rid, "Authorization", "Bearer "+f.token("acc_a", "viewer"))...), tc.viewer)
		})
	}
}

// TestRateLimitRefusalFromThePolicy: the write limit's 429 is the policy's
// RATE_LIMITED row, in its shape, with Retry-After.
func TestRateLimitRefusalFromThePolicy(t *testing.T) {
	engine := profileEngine(t, "../policies/examples/apivideo", nil)
	f := newFixture(t, func(h *customer.Handler) { h.Policy, h.WritesPerMinute = engine, 1 })
	if a := f.as("acc_a", "POST", "/v1/api-keys", `{"site":"site_a","mode":"live"}`); a.status != 201 {
		t.Fatalf("first write: %d %s", a.status, a.raw)
	}
	a := f.as("acc_a", "POST", "/v1/api-keys", `{"site":"site_a","mode":"live"}`)
	if a.status != 429 || a.header.Get("Content-Type") != "application/problem+json" || a.header.Get("Retry-After") == "" ||
		a.body["type"] != "https://docs.api.video/reference/rate-limited" {
		t.Fatalf("second write: %d %v %s", a.status, a.header, a.raw)
	}
}
