# VibePeak as its users see it (seed 004).
package keygate.vibepeak_test

import rego.v1

import data.keygate.authz

key_request(plan, mode) := {
	"request": {"method": "GET", "host": "api.vibepeak.ai", "path": "/v1/tasks/task_abc123", "query": "", "path_ok": true, "headers": {"x-request-id": "req_abc123xyz"}},
	"credential": {"status": "found", "kind": "key", "scheme": "bearer"},
	"key": {"id": "key_1", "mode": mode, "name": "Production", "revoked": false, "expired": false},
	"site": {"id": "site-1", "account": "acct", "domains": [], "active": true},
	"account": {"id": "acct", "plan": plan, "status": "active"},
}

anonymous(path) := {
	"request": {"method": "GET", "host": "api.vibepeak.ai", "path": path, "query": "", "path_ok": true, "headers": {"x-request-id": "req_abc123xyz"}},
	"credential": {"status": "missing", "kind": "", "scheme": ""},
}

decide(inp) := d if {
	d := authz.decision with input as inp
}

test_paid_plans_concurrency if {
	every plan, want in {"plus": "1", "pro": "3", "max": "5"} {
		d := decide(key_request(plan, "live"))
		d.allow
		d.headers == {"x-keygate-concurrency": want, "x-livemode": "true"}
	}
}

test_test_key_livemode_false if {
	d := decide(key_request("pro", "test"))
	d.allow
	d.headers["x-livemode"] == "false"
}

test_plans_without_api if {
	every plan in ["free", "starter", "enterprise"] {
		d := decide(key_request(plan, "live"))
		d.status == 403
		d.body == {"error": {
			"code": "PLAN_REQUIRED",
			"message": "Your plan doesn't include API access. Upgrade to Plus or higher.",
			"request_id": "req_abc123xyz",
		}}
	}
}

test_error_code_table if {
	base := key_request("pro", "live")
	cases := [
		[anonymous("/v1/tasks"), 401, "MISSING_API_KEY"],
		[object.union(base, {"credential": {"status": "unknown"}}), 401, "INVALID_API_KEY"],
		[object.union(base, {"credential": {"status": "malformed"}}), 401, "INVALID_API_KEY"],
		[object.union(base, {"key": {"revoked": true}}), 401, "API_KEY_REVOKED"],
		[object.union(base, {"key": {"expired": true}}), 401, "API_KEY_EXPIRED"],
		[key_request("free", "live"), 403, "PLAN_REQUIRED"],
	]
	every c in cases {
		d := decide(c[0])
		[d.status, d.body.error.code, d.body.error.request_id] == [c[1], c[2], "req_abc123xyz"]
	}
}

test_only_health_is_public if {
	decide(anonymous("/health")).allow
	every path in ["/auth/api-key", "/v1/public/site-1/x"] {
		decide(anonymous(path)).body.error.code == "MISSING_API_KEY"
	}
}

test_bearer_only if {
	every scheme in ["basic", "x-api-key"] {
		d := decide(object.union(key_request("pro", "live"), {"credential": {"scheme": scheme}}))
		[d.status, d.code] == [401, "INVALID_API_KEY"]
	}
}
