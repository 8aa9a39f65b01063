# Tests of the default policy: every rule of authz.rego and response.rego,
# against the shipped data.yaml unless a test overrides part of it. Where a
# test checks data-driven behaviour (concurrency, messages, rates, quotas) it
# reads the expected value from data.keygate.config, so a copy of this
# directory with edited numbers or wording still passes its own tests; the
# statuses of the contract table (test_contract_statuses) stay pinned.
package keygate.authz_test

import rego.v1

import data.keygate.authz

# A found live key of an active pro account, on a plain key route.
base := {
	"request": {
		"method": "GET", "host": "api.example.test", "path": "/v1/videos", "query": "",
		"path_ok": true, "headers": {},
	},
	"credential": {"status": "found", "kind": "key", "scheme": "bearer"},
	"key": {"id": "key_1", "mode": "live", "name": "", "revoked": false, "expired": false},
	"site": {"id": "site-a", "account": "acct", "domains": [], "active": true},
	"account": {"id": "acct", "plan": "pro", "status": "active"},
}

with_input(o) := object.union(base, o)

# An anonymous browser request to a public site route of site-a.
public_base := {
	"request": {
		"method": "GET", "host": "api.example.test", "path": "/v1/public/site-a/player", "query": "",
		"path_ok": true, "headers": {},
		"origin": {"scheme": "https", "host": "www.example.com", "port": "443", "default_port": true},
	},
	"credential": {"status": "missing", "kind": "", "scheme": ""},
	"public": {
		"status": "found",
		"site": {"id": "site-a", "account": "acct", "domains": ["example.com", "*.example.com"], "active": true},
		"account": {"id": "acct", "plan": "free", "status": "active"},
	},
}

with_public(o) := object.union(public_base, o)

cfg(o) := object.union(data.keygate.config, o)

decide(inp) := d if {
	d := authz.decision with input as inp
}

decide_cfg(inp, c) := d if {
	d := authz.decision with input as inp with data.keygate.config as c
}

# deny reports status, code and rule in one value so failures read well.
deny(d) := [d.status, d.code, d.rule] if not d.allow

conf := data.keygate.config

# concurrency is the x-keygate-concurrency header the data gives a plan.
concurrency(plan) := format_int(conf.plans[plan].concurrency, 10)

# message is the message the data gives an error.
message(name) := conf.errors[name].message

# --- key routes: allow ---

test_pro_key_allowed_with_concurrency if {
	d := decide(base)
	d.allow
	d.status == 200
	d.rule == "key_route"
	d.headers == {"x-keygate-concurrency": concurrency("pro")}
	[l.kind | some l in d.limits] == ["rate"]
}

test_paid_plans_concurrency if {
	paid := {plan | some plan, p in conf.plans; p.api; p.concurrency}
	count(paid) > 0
	every plan in paid {
		d := decide(with_input({"account": {"plan": plan}}))
		d.allow
		d.headers["x-keygate-concurrency"] == concurrency(plan)
	}
}

test_plan_without_concurrency_sends_none if {
	c := cfg({"plans": {"custom": {"api": true}}})
	d := decide_cfg(with_input({"account": {"plan": "custom"}}), c)
	d.allow
	d.headers == {}
}

test_trialing_account_allowed if decide(with_input({"account": {"status": "trialing"}})).allow

test_test_key_allowed_on_unlisted_host if decide(with_input({"key": {"mode": "test"}})).allow

test_mode_headers_added if {
	c := cfg({"mode_headers": {"live": {"x-livemode": "true"}, "test": {"x-livemode": "false"}}})
	decide_cfg(base, c).headers == {"x-keygate-concurrency": concurrency("pro"), "x-livemode": "true"}
	decide_cfg(with_input({"key": {"mode": "test"}}), c).headers == {"x-keygate-concurrency": concurrency("pro"), "x-livemode": "false"}
}

# --- key routes: credential problems ---

test_credential_statuses if {
	cases := {
		"ambiguous": [400, "AMBIGUOUS_CREDENTIALS", "credential_ambiguous"],
		"missing": [401, "MISSING_API_KEY", "credential_missing"],
		"malformed": [401, "INVALID_API_KEY", "key_invalid"],
		"unknown": [401, "INVALID_API_KEY", "key_invalid"],
		"unavailable": [503, "AUTHZ_UNAVAILABLE", "store_unavailable"],
		"invalid_token": [401, "INVALID_TOKEN", "token_invalid"],
		"expired_token": [401, "TOKEN_EXPIRED", "token_expired"],
	}
	every status, want in cases {
		inp := json.patch(base, [
			{"op": "replace", "path": "/credential/status", "value": status},
			{"op": "remove", "path": "/key"},
			{"op": "remove", "path": "/site"},
			{"op": "remove", "path": "/account"},
		])
		deny(decide(inp)) == want
	}
}

test_missing_key_body if {
	d := decide(json.patch(base, [{"op": "replace", "path": "/credential", "value": {"status": "missing", "kind": "", "scheme": ""}}]))
	d.body == {"code": "MISSING_API_KEY", "message": message("MISSING_API_KEY")}
}

test_key_state if {
	deny(decide(with_input({"key": {"revoked": true}}))) == [401, "API_KEY_REVOKED", "key_revoked"]
	deny(decide(with_input({"key": {"expired": true}}))) == [401, "API_KEY_EXPIRED", "key_expired"]
}

test_revoked_wins_over_everything_after_it if {
	inp := with_input({"key": {"revoked": true}, "site": {"active": false}, "account": {"plan": "free", "status": "inactive"}})
	deny(decide(inp)) == [401, "API_KEY_REVOKED", "key_revoked"]
}

test_token_found_is_allowed if decide(with_input({"credential": {"kind": "token"}})).allow

# --- key routes: which credentials a deployment accepts ---

test_credential_not_accepted if {
	c := json.patch(data.keygate.config, [{"op": "replace", "path": "/credentials", "value": [["bearer", "token"], ["basic", "key"]]}])
	deny(decide_cfg(base, c)) == [401, "INVALID_API_KEY", "credential_not_accepted"]
	deny(decide_cfg(with_input({"credential": {"scheme": "x-api-key"}}), c)) == [401, "INVALID_API_KEY", "credential_not_accepted"]
	decide_cfg(with_input({"credential": {"scheme": "basic"}}), c).allow
	decide_cfg(with_input({"credential": {"kind": "token"}}), c).allow
}

test_unaccepted_scheme_refused_even_if_malformed if {
	c := json.patch(data.keygate.config, [{"op": "replace", "path": "/credentials", "value": [["x-api-key", "key"]]}])
	inp := with_input({"credential": {"status": "malformed", "kind": ""}})
	deny(decide_cfg(inp, c)) == [401, "INVALID_API_KEY", "credential_not_accepted"]
}

# --- key routes: site and account state ---

test_site_and_account_state if {
	deny(decide(with_input({"site": {"active": false}}))) == [401, "SITE_INACTIVE", "site_inactive"]
	deny(decide(with_input({"account": {"status": "inactive"}}))) == [401, "SUBSCRIPTION_INACTIVE", "subscription_inactive"]
	deny(decide(with_input({"account": {"status": "trial_expired"}}))) == [401, "TRIAL_EXPIRED", "trial_expired"]
}

test_inactive_site_before_account if {
	inp := with_input({"site": {"active": false}, "account": {"status": "inactive"}})
	deny(decide(inp)) == [401, "SITE_INACTIVE", "site_inactive"]
}

# --- key routes: plans ---

test_plans_without_api if {
	every plan in {plan | some plan, p in conf.plans; not p.api} | {"no-such-plan"} {
		d := decide(with_input({"account": {"plan": plan}}))
		deny(d) == [403, "PLAN_REQUIRED", "plan_without_api"]
		d.message == message("PLAN_REQUIRED")
	}
}

route_cfg := cfg({"routes": {"plan_routes": [{"prefix": "/v1/avatars/", "plans": ["max", "enterprise"]}]}})

test_route_not_in_plan if {
	d := decide_cfg(with_input({"request": {"path": "/v1/avatars/generate"}}), route_cfg)
	deny(d) == [403, "PLAN_REQUIRED", "route_not_in_plan"]
	d.message == message("ROUTE_PLAN_REQUIRED")
}

test_route_in_plan if {
	decide_cfg(with_input({"request": {"path": "/v1/avatars/generate"}, "account": {"plan": "max"}}), route_cfg).allow
	decide_cfg(base, route_cfg).allow
}

test_plan_without_api_before_route if {
	inp := with_input({"request": {"path": "/v1/avatars/x"}, "account": {"plan": "free"}})
	deny(decide_cfg(inp, route_cfg)) == [403, "PLAN_REQUIRED", "plan_without_api"]
}

# --- key routes: site scoping ---

test_site_scoped_paths if {
	decide(with_input({"request": {"path": "/v1/sites/site-a/videos"}})).allow
	decide(with_input({"request": {"path": "/v1/sites/site-a"}})).allow
	deny(decide(with_input({"request": {"path": "/v1/sites/site-b/videos"}}))) == [403, "SITE_MISMATCH", "site_mismatch"]
	deny(decide(with_input({"request": {"path": "/v1/sites/site-ab/videos"}}))) == [403, "SITE_MISMATCH", "site_mismatch"]
	deny(decide(with_input({"request": {"path": "/v1/sites/"}}))) == [403, "SITE_MISMATCH", "site_mismatch"]
}

# keygate's own input classifies the path (input.request.prefixes and
# exact_path); the rules decide on that, not on the raw path.
# own_site_prefixes is keygate's too: the prefixes whose segment is the
# key's site id.
classified(p, prefixes) := with_input({"request": {
	"path": p, "prefixes": prefixes,
	"own_site_prefixes": [prefix | some prefix, segment in prefixes; segment == base.site.id],
}})

test_classified_paths if {
	decide(classified("/v1/sites/site-a/videos/vid_9", {"/v1/sites/": "site-a"})).allow
	deny(decide(classified("/v1/sites/site-b/videos/vid_9", {"/v1/sites/": "site-b"}))) == [403, "SITE_MISMATCH", "site_mismatch"]
	decide(classified("/v1/videos/vid_9", {})).rule == "key_route"
	health := object.union(classified("/health", {"/health": ""}), {"request": {"exact_path": "/health"}})
	decide(health).rule == "public_route"
	decide(classified("/healthz", {"/health": "z"})).rule == "key_route"
	decide(classified("/auth/api-key", {"/auth/": "api-key"})).rule == "public_route"
}

# With keygate's classification the policy compares no site id: the site a
# path names is the key's only when keygate says so.
test_classified_site_is_keygates if {
	inp := with_input({"request": {"path": "/v1/sites/site-a/x", "prefixes": {"/v1/sites/": "site-a"}}})
	deny(decide(inp)) == [403, "SITE_MISMATCH", "site_mismatch"]
	own := object.union(inp, {"request": {"own_site_prefixes": ["/v1/sites/"]}})
	decide(own).allow
}

# The decision never depends on the key's, site's or account's ids: keygate
# fills them into counter keys ("{key}", "{site}") and classifies the site
# a path names, so it can remember one decision for every key with the
# same facts. Same facts, other ids: the same decision, on every kind of
# key route.
test_decision_ignores_ids if {
	some p in ["/v1/videos/vid_1", "/v1/audio/generate", "/v1/sites/SITE/videos", "/v1/usage"]
	some method in ["GET", "POST"]
	decide(with_ids(p, method, "key_1", "site-a", "acct")) == decide(with_ids(p, method, "key_2", "site-b", "acct-2"))
}

test_with_ids_site_route_allows if {
	decide(with_ids("/v1/sites/SITE/videos", "GET", "key_2", "site-b", "acct-2")).allow
	q := decide(with_ids("/v1/audio/generate", "POST", "key_2", "site-b", "acct-2")).limits[1]
	q.key == "key:{key}:live:quota"
}

with_ids(p, method, key, site, account) := object.union(base, {
	"request": {
		"path": path, "method": method, "prefixes": prefixes,
		"own_site_prefixes": [prefix | some prefix, segment in prefixes; segment == site],
	},
	"key": {"id": key, "limits": {"quota": 5}},
	"site": {"id": site, "account": account},
	"account": {"id": account},
}) if {
	path := replace(p, "SITE", site)
	prefixes := {prefix: segment |
		some prefix in authz.data_paths
		authz.route_prefix_of(path, prefix)
		segment := split(substring(path, count(prefix), -1), "/")[0]
	}
}

# --- key routes: live/test mode by host ---

host_cfg := cfg({"host_modes": {"sandbox.example.test": "test", "api.example.test": "live"}})

test_host_modes if {
	decide_cfg(base, host_cfg).allow
	deny(decide_cfg(with_input({"key": {"mode": "test"}}), host_cfg)) == [403, "MODE_MISMATCH", "mode_mismatch"]
	decide_cfg(with_input({"key": {"mode": "test"}, "request": {"host": "sandbox.example.test"}}), host_cfg).allow
	deny(decide_cfg(with_input({"request": {"host": "sandbox.example.test"}}), host_cfg)) == [403, "MODE_MISMATCH", "mode_mismatch"]
	decide_cfg(with_input({"key": {"mode": "test"}, "request": {"host": "other.example.test"}}), host_cfg).allow
}

# --- routes ---

test_public_paths_need_no_credential if {
	anon := json.patch(base, [
		{"op": "replace", "path": "/credential", "value": {"status": "missing", "kind": "", "scheme": ""}},
		{"op": "remove", "path": "/key"}, {"op": "remove", "path": "/site"}, {"op": "remove", "path": "/account"},
	])
	every path in ["/health", "/auth/api-key", "/auth/refresh"] {
		d := decide(json.patch(anon, [{"op": "replace", "path": "/request/path", "value": path}]))
		d.allow
		d.rule == "public_route"
		d.headers == {}
	}
	every path in ["/healthz", "/health/x", "/authx", "/v1/auth/x"] {
		deny(decide(json.patch(anon, [{"op": "replace", "path": "/request/path", "value": path}]))) == [401, "MISSING_API_KEY", "credential_missing"]
	}
}

test_invalid_path if {
	deny(decide(with_input({"request": {"path_ok": false, "path": "/v1/sites/site-a/../site-b"}}))) == [400, "INVALID_PATH", "invalid_path"]
	deny(decide(with_input({"request": {"path_ok": false, "path": "/health"}}))) == [400, "INVALID_PATH", "invalid_path"]
}

test_route_case_refused if {
	deny(decide(with_input({"request": {"path": "/V1/SITES/site-b/videos"}}))) == [400, "INVALID_PATH", "invalid_path"]
	deny(decide(with_input({"request": {"path": "/v1/Sites/site-b/videos"}}))) == [400, "INVALID_PATH", "invalid_path"]
	deny(decide(with_input({"request": {"path": "/HEALTH"}}))) == [400, "INVALID_PATH", "invalid_path"]
	deny(decide(with_input({"request": {"method": "POST", "path": "/v1/audio/GENERATE"}}))) == [400, "INVALID_PATH", "invalid_path"]
	deny(decide(with_input({"request": {"path": "/v1/PUBLIC/site-a/x"}}))) == [400, "INVALID_PATH", "invalid_path"]
}

test_case_outside_routes_kept if {
	decide(with_input({"request": {"path": "/v1/videos/AbC"}})).allow
	decide(with_input({"request": {"path": "/v1/sites/site-a/Videos/X"}})).allow
}

# --- public site routes ---

test_public_site_allowed_origins if {
	every origin in [
		{"scheme": "https", "host": "example.com", "port": "443", "default_port": true},
		{"scheme": "https", "host": "www.example.com", "port": "443", "default_port": true},
		{"scheme": "http", "host": "a.b.example.com", "port": "80", "default_port": true},
	] {
		d := decide(with_public({"request": {"origin": origin}}))
		d.allow
		d.rule == "public_site_route"
	}
}

test_public_site_refused_origins if {
	every origin in [
		{"scheme": "https", "host": "evilexample.com", "port": "443", "default_port": true},
		{"scheme": "https", "host": "example.com.evil.test", "port": "443", "default_port": true},
		{"scheme": "https", "host": "example.com", "port": "8443", "default_port": false},
		{"scheme": "ftp", "host": "example.com", "port": "", "default_port": false},
	] {
		deny(decide(with_public({"request": {"origin": origin}}))) == [403, "DOMAIN_NOT_ALLOWED", "domain_not_allowed"]
	}
}

test_public_site_without_origin if {
	inp := json.patch(public_base, [{"op": "remove", "path": "/request/origin"}])
	deny(decide(inp)) == [403, "DOMAIN_NOT_ALLOWED", "domain_not_allowed"]
}

site_domains(domains) := json.patch(public_base, [{"op": "replace", "path": "/public/site/domains", "value": domains}])

origin(scheme, host, port, default_port) := {"request": {"origin": {"scheme": scheme, "host": host, "port": port, "default_port": default_port}}}

test_domain_forms if {
	# A wildcard matches subdomains only.
	not decide(object.union(site_domains(["*.example.com"]), origin("https", "example.com", "443", true))).allow

	# host:port matches that port, any scheme.
	decide(object.union(site_domains(["localhost:3000"]), origin("http", "localhost", "3000", false))).allow
	not decide(object.union(site_domains(["localhost:3000"]), origin("http", "localhost", "80", true))).allow
	decide(object.union(site_domains(["*.example.com:8443"]), origin("https", "a.example.com", "8443", false))).allow

	# scheme://host matches that scheme only.
	decide(object.union(site_domains(["https://shop.example.com"]), origin("https", "shop.example.com", "443", true))).allow
	not decide(object.union(site_domains(["https://shop.example.com"]), origin("http", "shop.example.com", "80", true))).allow
	decide(object.union(site_domains(["http://localhost:8080"]), origin("http", "localhost", "8080", false))).allow

	# Domains compare case-insensitively (keygate lower-cases the origin).
	decide(object.union(site_domains(["Example.COM"]), origin("https", "example.com", "443", true))).allow

	# No domains: nothing is allowed.
	not decide(object.union(site_domains([]), origin("https", "example.com", "443", true))).allow
}

test_public_site_lookup_outcomes if {
	deny(decide(json.patch(public_base, [{"op": "replace", "path": "/public", "value": {"status": "unknown"}}]))) == [403, "DOMAIN_NOT_ALLOWED", "public_site_unknown"]
	deny(decide(json.patch(public_base, [{"op": "replace", "path": "/public", "value": {"status": "unavailable"}}]))) == [503, "AUTHZ_UNAVAILABLE", "public_site_unavailable"]
}

test_public_site_not_paying if {
	d := decide(with_public({"public": {"account": {"status": "inactive"}}}))
	deny(d) == [402, "SUBSCRIPTION_INACTIVE", "public_subscription_inactive"]
	d.body == {"code": "SUBSCRIPTION_INACTIVE", "message": conf.public_errors.SUBSCRIPTION_INACTIVE.message}
	e := decide(with_public({"public": {"account": {"status": "trial_expired"}}}))
	deny(e) == [402, "TRIAL_EXPIRED", "public_trial_expired"]
	e.message == conf.public_errors.TRIAL_EXPIRED.message
	decide(with_public({"public": {"account": {"status": "trialing"}}})).allow
}

test_public_site_inactive if {
	deny(decide(with_public({"public": {"site": {"active": false}}}))) == [403, "SITE_INACTIVE", "public_site_inactive"]
}

test_domain_checked_before_subscription if {
	inp := object.union(with_public({"public": {"account": {"status": "inactive"}}}), origin("https", "evil.test", "443", true))
	deny(decide(inp)) == [403, "DOMAIN_NOT_ALLOWED", "domain_not_allowed"]
}

test_public_site_ignores_credentials if {
	inp := with_public({"credential": {"status": "unknown", "kind": "key", "scheme": "bearer"}})
	decide(inp).allow
}

# --- response shaping ---

test_body_shapes if {
	inp := with_input({"account": {"plan": "free"}})
	decide_cfg(inp, cfg({"body_shape": "message"})).body == {"message": message("PLAN_REQUIRED")}
	decide_cfg(inp, cfg({"body_shape": "error_object"})).body == {"error": {"code": "PLAN_REQUIRED", "message": message("PLAN_REQUIRED")}}
	with_id := object.union(inp, {"request": {"headers": {"x-request-id": "req_1"}}})
	decide_cfg(with_id, cfg({"body_shape": "error_object"})).body.error.request_id == "req_1"
}

test_problem_details_shape if {
	inp := with_input({"account": {"plan": "free"}})
	d := decide_cfg(inp, cfg({"body_shape": "problem"}))
	d.body == {"type": "about:blank", "title": message("PLAN_REQUIRED"), "status": 403, "detail": message("PLAN_REQUIRED")}
	d.content_type == "application/problem+json"
	c := cfg({"body_shape": "problem", "problem_type_base": "https://docs.example.test/errors/"})
	decide_cfg(inp, c).body.type == "https://docs.example.test/errors/plan-required"
	own := cfg({"body_shape": "problem", "errors": {"PLAN_REQUIRED": {"type": "https://t.test/p", "title": "Plan"}}})
	decide_cfg(inp, own).body == {"type": "https://t.test/p", "title": "Plan", "status": 403, "detail": message("PLAN_REQUIRED")}
}

test_content_type if {
	inp := with_input({"account": {"plan": "free"}})
	decide(inp).content_type == "application/json"
	decide_cfg(inp, cfg({"content_type": "application/vnd.example+json"})).content_type == "application/vnd.example+json"
	c := cfg({"errors": {"PLAN_REQUIRED": {"content_type": "application/problem+json"}}})
	decide_cfg(inp, c).content_type == "application/problem+json"
}

# keygate's own denials (timeouts, outages, the token exchange) are rows of
# config.errors, shaped like the rest.
test_denials_table if {
	d := authz.denials
	d.AUTHZ_UNAVAILABLE == {
		"allow": false, "status": 503, "code": "AUTHZ_UNAVAILABLE", "rule": "authz_unavailable",
		"message": message("AUTHZ_UNAVAILABLE"), "content_type": "application/json",
		"body": {"code": "AUTHZ_UNAVAILABLE", "message": message("AUTHZ_UNAVAILABLE")},
	}
	d.INVALID_REFRESH_TOKEN.code == "INVALID_TOKEN"
	count(d) == count(data.keygate.config.errors)
	p := authz.denials with data.keygate.config.body_shape as "problem"
	p.INTERNAL_ERROR.content_type == "application/problem+json"
	p.INTERNAL_ERROR.body.status == 500
}

test_error_with_own_body if {
	c := cfg({"errors": {"PLAN_REQUIRED": {"body": {"message": "Upgrade", "upgrade_url": "https://example.test/pricing"}}}})
	d := decide_cfg(with_input({"account": {"plan": "free"}}), c)
	d.body == {"message": "Upgrade", "upgrade_url": "https://example.test/pricing"}
	d.status == 403
}

# A broken error table or body shape never turns a denial into an allow: the
# deny document is undefined and the default decision (500) answers.
test_broken_data_fails_closed if {
	inp := with_input({"account": {"plan": "free"}})
	deny(decide_cfg(inp, cfg({"body_shape": "no-such-shape"}))) == [500, "POLICY_ERROR", "default"]
	c := json.patch(data.keygate.config, [{"op": "remove", "path": "/errors/PLAN_REQUIRED"}])
	deny(decide_cfg(inp, c)) == [500, "POLICY_ERROR", "default"]
}

# --- the shipped data itself ---

test_every_error_is_well_formed if {
	every name, e in object.union(data.keygate.config.errors, data.keygate.config.public_errors) {
		e.status >= 400
		e.status <= 599
		e.message != ""
		regex.match(`^[A-Z0-9_]+$`, object.get(e, "code", name))
	}
}

test_contract_statuses if {
	errs := data.keygate.config.errors
	every code, status in {
		"MISSING_API_KEY": 401, "INVALID_API_KEY": 401, "API_KEY_REVOKED": 401, "API_KEY_EXPIRED": 401,
		"INVALID_TOKEN": 401, "TOKEN_EXPIRED": 401, "AMBIGUOUS_CREDENTIALS": 400,
		"SITE_INACTIVE": 401, "SUBSCRIPTION_INACTIVE": 401, "TRIAL_EXPIRED": 401,
		"PLAN_REQUIRED": 403, "SITE_MISMATCH": 403, "DOMAIN_NOT_ALLOWED": 403, "MODE_MISMATCH": 403,
		"AUTHZ_UNAVAILABLE": 503,
	} {
		errs[code].status == status
	}
	data.keygate.config.public_errors.SUBSCRIPTION_INACTIVE.status == 402
	data.keygate.config.public_errors.TRIAL_EXPIRED.status == 402
}

# --- credentials to the upstream ---

test_credentials_stripped_by_default if {
	not decide(base).keep_credentials
}

test_strip_credentials_off_keeps_them if {
	c := json.patch(data.keygate.config, [{"op": "replace", "path": "/strip_credentials", "value": false}])
	decide_cfg(base, c).keep_credentials
}
