# Tests of entitlements.rego and the entitlement parts of limits.rego: per-key
# scopes, allowed CIDRs, remaining uses, meta headers and key limits. Uses
# base, decide, decide_cfg, deny and cfg from authz_test.rego.
package keygate.authz_test

import rego.v1

import data.keygate.authz

# ent is base with a key that has the given entitlements, on method path.
ent(key, method, path) := object.union(base, {
	"request": object.union(base.request, {"method": method, "path": path}),
	"key": object.union(base.key, key),
})

# ent_from is ent from a client address.
ent_from(key, method, path, addr) := object.union(ent(key, method, path), {"request": object.union(
	ent(key, method, path).request,
	{"client_address": addr},
)})

msg(name) := data.keygate.config.errors[name].message

test_entitlement_statuses if {
	errs := data.keygate.config.errors
	errs.INSUFFICIENT_SCOPE.status == 403
	errs.IP_NOT_ALLOWED.status == 403
	errs.USAGE_EXHAUSTED.status == 403
}

test_unscoped_key_may_do_anything if {
	decide(ent({}, "POST", "/v1/videos")).allow
	decide(ent({"scopes": []}, "DELETE", "/v1/videos/v1")).allow
	decide(ent({}, "GET", "/elsewhere")).allow
}

test_read_scope_allows_reads if {
	decide(ent({"scopes": ["videos:read"]}, "GET", "/v1/videos/1")).allow
	decide(ent({"scopes": ["videos:read"]}, "HEAD", "/v1/videos")).allow
	decide(ent({"scopes": ["audio:write", "videos:read"]}, "GET", "/v1/videos")).allow
}

test_read_scope_refuses_writes if {
	d := decide(ent({"scopes": ["videos:read"]}, "POST", "/v1/videos"))
	deny(d) == [403, "INSUFFICIENT_SCOPE", "insufficient_scope"]
	d.message == msg("INSUFFICIENT_SCOPE")
	d.body == {"code": "INSUFFICIENT_SCOPE", "message": msg("INSUFFICIENT_SCOPE"), "required_scope": "videos:write"}
}

test_scope_of_another_resource_is_refused if {
	d := decide(ent({"scopes": ["videos:read"]}, "GET", "/v1/audio/x"))
	d.body.required_scope == "audio:read"
	deny(d) == [403, "INSUFFICIENT_SCOPE", "insufficient_scope"]
}

test_write_does_not_grant_read if {
	d := decide(ent({"scopes": ["videos:write"]}, "GET", "/v1/videos"))
	d.body.required_scope == "videos:read"
	decide(ent({"scopes": ["videos:write"]}, "PATCH", "/v1/videos/1")).allow
}

test_wildcards if {
	decide(ent({"scopes": ["*"]}, "DELETE", "/v1/videos/1")).allow
	decide(ent({"scopes": ["*"]}, "GET", "/elsewhere")).allow
	decide(ent({"scopes": ["*:read"]}, "GET", "/v1/audio/1")).allow
	not decide(ent({"scopes": ["*:read"]}, "POST", "/v1/audio")).allow
	decide(ent({"scopes": ["videos:*"]}, "POST", "/v1/videos")).allow
	not decide(ent({"scopes": ["videos:*"]}, "GET", "/v1/audio")).allow
}

test_outside_the_resource_prefix_needs_the_default if {
	d := decide(ent({"scopes": ["videos:read"]}, "GET", "/elsewhere"))
	d.body.required_scope == data.keygate.config.scopes.default
	d2 := decide(ent({"scopes": ["videos:read"]}, "GET", "/v1/"))
	d2.body.required_scope == data.keygate.config.scopes.default
}

test_mint_route_needs_no_scope if {
	decide(ent({"scopes": ["videos:read"]}, "POST", data.keygate.config.routes.mint_route)).allow
}

test_route_overrides if {
	routes := [
		{"prefix": "/v1/audio/generate", "methods": ["POST"], "scope": "audio:generate"},
		{"path": "/v1/usage", "scope": ""},
	]
	c := cfg({"scopes": object.union(data.keygate.config.scopes, {"routes": routes})})
	gen := ent({"scopes": ["audio:generate"]}, "POST", "/v1/audio/generate")
	decide_cfg(gen, c).allow
	not decide(gen).allow
	d := decide_cfg(ent({"scopes": ["audio:write"]}, "POST", "/v1/audio/generate"), c)
	d.body.required_scope == "audio:generate"

	# methods not listed fall back to the default rule
	decide_cfg(ent({"scopes": ["audio:read"]}, "GET", "/v1/audio/generate"), c).allow
	decide_cfg(ent({"scopes": ["videos:read"]}, "GET", "/v1/usage"), c).allow
	not decide_cfg(ent({"scopes": ["videos:read"]}, "GET", "/v1/usage/x"), c).allow
}

test_read_methods_from_data if {
	c := cfg({"scopes": object.union(data.keygate.config.scopes, {"read_methods": ["GET", "HEAD", "OPTIONS"]})})
	decide_cfg(ent({"scopes": ["videos:read"]}, "OPTIONS", "/v1/videos"), c).allow
	not decide(ent({"scopes": ["videos:read"]}, "OPTIONS", "/v1/videos")).allow
}

test_without_scope_data_a_scoped_key_needs_star if {
	c := object.remove(data.keygate.config, ["scopes"])
	d := decide_cfg(ent({"scopes": ["videos:read"]}, "GET", "/v1/videos"), c)
	d.body.required_scope == "*"
	decide_cfg(ent({"scopes": ["*"]}, "GET", "/v1/videos"), c).allow
}

test_scope_body_in_every_shape if {
	c := cfg({"body_shape": "problem"})
	d := decide_cfg(ent({"scopes": ["videos:read"]}, "POST", "/v1/videos"), c)
	d.body.required_scope == "videos:write"
	d.body.status == 403
	d.content_type == "application/problem+json"
}

test_ip_allowed_inside if {
	key := {"allowed_cidrs": ["10.0.0.0/8", "2001:db8::/32"]}
	decide(ent_from(key, "GET", "/v1/videos", "10.1.2.3")).allow
	decide(ent_from(key, "GET", "/v1/videos", "2001:db8::7")).allow
}

test_ip_refused_outside if {
	key := {"allowed_cidrs": ["10.0.0.0/8"]}
	d := decide(ent_from(key, "GET", "/v1/videos", "192.0.2.1"))
	deny(d) == [403, "IP_NOT_ALLOWED", "ip_not_allowed"]
	d.message == msg("IP_NOT_ALLOWED")
	deny(decide(ent_from(key, "GET", "/v1/videos", "2001:db8::1"))) == [403, "IP_NOT_ALLOWED", "ip_not_allowed"]
	bad := {"allowed_cidrs": ["not a cidr"]}
	deny(decide(ent_from(bad, "GET", "/v1/videos", "10.0.0.1"))) == [403, "IP_NOT_ALLOWED", "ip_not_allowed"]
}

test_ip_unknown_address_is_refused if {
	deny(decide(ent({"allowed_cidrs": ["10.0.0.0/8"]}, "GET", "/v1/videos"))) == [403, "IP_NOT_ALLOWED", "ip_not_allowed"]
}

test_ip_is_checked_before_scope if {
	key := {"allowed_cidrs": ["10.0.0.0/8"], "scopes": ["audio:read"]}
	deny(decide(ent_from(key, "GET", "/v1/videos", "192.0.2.1"))) == [403, "IP_NOT_ALLOWED", "ip_not_allowed"]
	deny(decide(ent_from(key, "GET", "/v1/videos", "10.0.0.1"))) == [403, "INSUFFICIENT_SCOPE", "insufficient_scope"]
}

test_key_state_before_entitlements if {
	key := {"revoked": true, "scopes": ["audio:read"], "remaining": 0}
	deny(decide(ent(key, "GET", "/v1/videos"))) == [401, "API_KEY_REVOKED", "key_revoked"]
}

test_usage_exhausted if {
	metered := [c | some c in data.keygate.config.limits.costs; c.quota > 0][0]
	method := object.get(metered, "methods", ["GET"])[0]
	d := decide(ent({"remaining": 0}, method, metered.prefix))
	deny(d) == [403, "USAGE_EXHAUSTED", "usage_exhausted"]
	d.message == msg("USAGE_EXHAUSTED")
	decide(ent({"remaining": 1}, method, metered.prefix)).allow

	# routes that spend no use still answer (a rolled key's grace, say)
	decide(ent({"remaining": 0}, "GET", "/v1/videos")).allow
}

test_scope_override_case_spelling_is_refused if {
	routes := [{"prefix": "/v1/videos/admin", "scope": "admin:all"}]
	c := cfg({"scopes": object.union(data.keygate.config.scopes, {"routes": routes})})
	key := {"scopes": ["videos:read"]}
	deny(decide_cfg(ent(key, "GET", "/v1/videos/admin"), c)) == [403, "INSUFFICIENT_SCOPE", "insufficient_scope"]
	deny(decide_cfg(ent(key, "GET", "/v1/videos/Admin"), c))[1] == "INVALID_PATH"
	decide_cfg(ent(key, "GET", "/v1/videos/1"), c).allow
}

test_lower_case_method_meets_method_overrides if {
	routes := [{"prefix": "/v1/audio/generate", "methods": ["POST"], "scope": "audio:generate"}]
	c := cfg({"scopes": object.union(data.keygate.config.scopes, {"routes": routes})})
	d := decide_cfg(ent({"scopes": ["audio:write"]}, "post", "/v1/audio/generate"), c)
	d.body.required_scope == "audio:generate"
	decide(ent({"scopes": ["videos:read"]}, "get", "/v1/videos")).allow
}

test_star_scope_grants_every_route if {
	decide(ent({"scopes": ["*"]}, "GET", "/elsewhere")).allow
	decide(ent({"scopes": ["*"]}, "DELETE", "/v1/videos/1")).allow
}

test_scope_before_usage if {
	deny(decide(ent({"remaining": 0, "scopes": ["audio:read"]}, "GET", "/v1/videos"))) == [403, "INSUFFICIENT_SCOPE", "insufficient_scope"]
}

test_spend_use_on_metered_routes_only if {
	metered := [c | some c in data.keygate.config.limits.costs; c.quota > 0][0]
	method := object.get(metered, "methods", ["GET"])[0]
	decide(ent({"remaining": 3}, method, metered.prefix)).spend_use
	not decide(ent({"remaining": 3}, "GET", "/v1/usage")).spend_use
	not decide(ent({}, method, metered.prefix)).spend_use
	decide(ent({}, method, metered.prefix)).allow
}

test_public_routes_spend_nothing if {
	d := decide(with_public({}))
	d.allow
	not d.spend_use
}

test_meta_goes_upstream if {
	d := decide(ent({"meta": {"tier": "gold", "billing-ref": "b-1"}}, "GET", "/v1/videos"))
	d.allow
	d.headers["x-keygate-meta-tier"] == "gold"
	d.headers["x-keygate-meta-billing-ref"] == "b-1"
	not decide(ent({}, "GET", "/v1/videos")).headers["x-keygate-meta-tier"]
}

test_key_rate_beats_site_and_plan if {
	inp := object.union(ent({"limits": {"rate": 7}}, "GET", "/v1/videos"), {"site": object.union(base.site, {"limits": {"rate": 99}})})
	[r] := authz.limits with input as inp
	r.limit == 7
	r.key == "key:{key}:live"
	r.burst == 7
}

test_key_rate_zero_is_unlimited if {
	authz.limits == [] with input as ent({"limits": {"rate": 0}}, "GET", "/v1/videos")
}

test_key_quota_has_its_own_counter if {
	metered := [c | some c in data.keygate.config.limits.costs; c.quota > 0][0]
	method := object.get(metered, "methods", ["GET"])[0]
	got := authz.limits with input as ent({"limits": {"quota": 3}}, method, metered.prefix)
	[q] := [l | some l in got; l.kind == "quota"]
	q.key == "key:{key}:live:quota"
	q.limit == 3
	site := authz.limits with input as ent({}, method, metered.prefix)
	[sq] := [l | some l in site; l.kind == "quota"]
	sq.key == "site:{site}:live"
}
