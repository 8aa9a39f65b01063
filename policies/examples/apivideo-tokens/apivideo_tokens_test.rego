# api.video (seed 002) as its users see it: Bearer access tokens for
# everything, the key only at POST /auth/api-key.
package keygate.apivideo_tokens_test

import rego.v1

import data.keygate.authz

request(host, scheme, kind, mode) := {
	"request": {"method": "GET", "host": host, "path": "/videos", "query": "", "path_ok": true, "headers": {}},
	"credential": {"status": "found", "kind": kind, "scheme": scheme},
	"key": {"id": "key_1", "mode": mode, "name": "", "revoked": false, "expired": false},
	"site": {"id": "project", "account": "acct", "domains": [], "active": true},
	"account": {"id": "acct", "plan": "pro", "status": "active"},
}

decide(inp) := d if {
	d := authz.decision with input as inp
}

outcome(d) := [d.status, d.code]

test_tokens_on_their_hosts if {
	decide(request("ws.api.video", "bearer", "token", "live")).allow
	decide(request("sandbox.api.video", "bearer", "token", "test")).allow
	outcome(decide(request("ws.api.video", "bearer", "token", "test"))) == [403, "MODE_MISMATCH"]
}

test_the_key_itself_is_refused_on_api_routes if {
	every scheme in ["bearer", "basic", "x-api-key"] {
		d := decide(request("ws.api.video", scheme, "key", "live"))
		outcome(d) == [401, "INVALID_TOKEN"]
		contains(d.message, "/auth/api-key")
	}
}

test_missing_credential_points_at_token_exchange if {
	r := json.patch(request("ws.api.video", "", "", "live"), [
		{"op": "replace", "path": "/credential", "value": {"status": "missing", "kind": "", "scheme": ""}},
		{"op": "remove", "path": "/key"},
	])
	d := decide(r)
	outcome(d) == [401, "MISSING_API_KEY"]
	contains(d.message, "/auth/api-key")
}

test_token_failures if {
	every status, code in {"invalid_token": "INVALID_TOKEN", "expired_token": "TOKEN_EXPIRED"} {
		r := object.union(request("ws.api.video", "bearer", "token", "live"), {"credential": {"status": status}})
		outcome(decide(r)) == [401, code]
	}
}

test_token_exchange_is_public if {
	r := object.union(request("ws.api.video", "", "", "live"), {"request": {"path": "/auth/api-key"}, "credential": {"status": "missing"}})
	decide(r).allow
}
