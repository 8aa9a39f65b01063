# api.video (seed 001) as its users see it: Basic with the key, or a Bearer
# access token; sandbox and production hosts.
package keygate.apivideo_test

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

test_basic_key_and_bearer_token_on_their_hosts if {
	every r in [
		request("ws.api.video", "basic", "key", "live"),
		request("sandbox.api.video", "basic", "key", "test"),
		request("ws.api.video", "bearer", "token", "live"),
		request("sandbox.api.video", "bearer", "token", "test"),
	] {
		decide(r).allow
	}
}

test_sandbox_and_production_do_not_mix if {
	every r in [
		request("ws.api.video", "basic", "key", "test"),
		request("sandbox.api.video", "basic", "key", "live"),
		request("sandbox.api.video", "bearer", "token", "live"),
	] {
		outcome(decide(r)) == [403, "MODE_MISMATCH"]
	}
}

test_key_is_not_a_bearer_token if {
	outcome(decide(request("ws.api.video", "bearer", "key", "live"))) == [401, "INVALID_TOKEN"]
	outcome(decide(request("ws.api.video", "x-api-key", "key", "live"))) == [401, "INVALID_TOKEN"]
}

test_token_failures if {
	every status, code in {"invalid_token": "INVALID_TOKEN", "expired_token": "TOKEN_EXPIRED"} {
		r := json.patch(request("ws.api.video", "bearer", "token", "live"), [
			{"op": "replace", "path": "/credential/status", "value": status},
			{"op": "remove", "path": "/key"},
		])
		outcome(decide(r)) == [401, code]
	}
}

test_revoked_key_kills_its_tokens if {
	r := object.union(request("ws.api.video", "bearer", "token", "live"), {"key": {"revoked": true}})
	outcome(decide(r)) == [401, "API_KEY_REVOKED"]
}

test_token_exchange_is_public if {
	every path in ["/auth/api-key", "/auth/refresh"] {
		r := object.union(request("ws.api.video", "", "", "live"), {"request": {"path": path}, "credential": {"status": "missing"}})
		decide(r).allow
	}
}

# A restricted key's scopes name api.video's root resources: videos:read
# lists and reads videos but cannot upload.
test_restricted_key_scopes_name_root_resources if {
	r := request("ws.api.video", "basic", "key", "live")
	scoped := object.union(r, {"key": object.union(r.key, {"scopes": ["videos:read"]})})
	decide(scoped).allow
	d := decide(object.union(scoped, {"request": object.union(r.request, {"method": "POST", "path": "/videos/v1/source"})}))
	outcome(d) == [403, "INSUFFICIENT_SCOPE"]
	d.body.required_scope == "videos:write"
	d.content_type == "application/problem+json"
}
