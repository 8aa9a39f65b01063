# VideoGen as its users see it (seed 000).
package keygate.videogen_test

import rego.v1

import data.keygate.authz

found := {
	"request": {"method": "POST", "host": "api.videogen.io", "path": "/v1/workflows/generate-video", "query": "", "path_ok": true, "headers": {}},
	"credential": {"status": "found", "kind": "key", "scheme": "bearer"},
	"key": {"id": "key_1", "mode": "live", "name": "", "revoked": false, "expired": false},
	"site": {"id": "site-1", "account": "acct", "domains": [], "active": true},
	"account": {"id": "acct", "plan": "pro", "status": "active"},
}

decide(inp) := d if {
	d := authz.decision with input as inp
}

test_bearer_key_allowed if decide(found).allow

test_every_401_is_bare_unauthorized if {
	every change in [
		{"credential": {"status": "missing", "kind": "", "scheme": ""}},
		{"credential": {"status": "unknown"}},
		{"credential": {"status": "malformed"}},
		{"credential": {"scheme": "x-api-key"}},
		{"credential": {"scheme": "basic"}},
		{"key": {"revoked": true}},
		{"key": {"expired": true}},
		{"site": {"active": false}},
		{"account": {"status": "inactive"}},
		{"account": {"status": "trial_expired"}},
	] {
		d := decide(object.union(found, change))
		d.status == 401
		d.body == {"message": "Unauthorized"}
	}
}

test_no_token_exchange_or_public_sites if {
	every path in ["/auth/api-key", "/v1/public/site-1/embed"] {
		d := decide(object.union(found, {"request": {"path": path}, "credential": {"status": "missing", "kind": "", "scheme": ""}}))
		d.status == 401
	}
	decide(object.union(found, {"request": {"path": "/health"}, "credential": {"status": "missing", "kind": "", "scheme": ""}})).allow
}

test_plan_without_api_is_forbidden if {
	d := decide(object.union(found, {"account": {"plan": "free"}}))
	[d.status, d.body] == [403, {"message": "Forbidden"}]
}
