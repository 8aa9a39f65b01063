package keygate.authz_test

import rego.v1

import data.keygate.authz

key_input(plan, mode, method, path) := {
	"request": {"method": method, "host": "api.example.test", "path": path, "query": "", "path_ok": true, "headers": {}},
	"credential": {"status": "found", "kind": "key", "scheme": "bearer"},
	"key": {"id": "key_1", "mode": mode, "name": "", "revoked": false, "expired": false},
	"site": {"id": "s1", "account": "a1", "active": true, "domains": []},
	"account": {"id": "a1", "plan": plan, "status": "active"},
}

# plan_limits is what the data gives a plan (rate, period, quota).
plan_limits(plan) := data.keygate.config.limits.plans[plan]

# cost is the data's cost entry for a prefix.
cost(prefix) := c if {
	some c in data.keygate.config.limits.costs
	c.prefix == prefix
}

with_limits(req, what, l) := object.union(req, {what: object.union(req[what], {"limits": l})})

test_plus_key_route_charges_its_rate if {
	got := authz.decision with input as key_input("plus", "live", "GET", "/v1/videos")
	got.allow
	count(got.limits) == 1
	l := got.limits[0]
	l.kind == "rate"
	l.key == "key:{key}:live"
	l.limit == plan_limits("plus").rate
	l.burst == object.get(plan_limits("plus"), "burst", plan_limits("plus").rate)
	l.period == object.get(plan_limits("plus"), "period", "1m")
	l.cost == data.keygate.config.limits.default_cost.rate
}

test_plan_rates if {
	rated := {plan | some plan, l in data.keygate.config.limits.plans; l.rate > 0}
	count(rated) > 0
	every plan in rated {
		got := authz.limits with input as key_input(plan, "live", "GET", "/v1/videos")
		got[0].limit == plan_limits(plan).rate
	}
}

test_generation_costs_more_and_is_metered if {
	got := authz.limits with input as key_input("pro", "live", "POST", "/v1/audio/generate")
	[r, q] := got
	r.kind == "rate"
	r.cost == cost("/v1/audio/generate").rate
	q.kind == "quota"
	q.key == "site:{site}:live"
	q.limit == plan_limits("pro").quota
	q.period == "month"
	q.cost == cost("/v1/audio/generate").quota
}

test_generation_get_is_not_metered if {
	got := authz.limits with input as key_input("pro", "live", "GET", "/v1/audio/generate")
	[r] := got
	r.cost == data.keygate.config.limits.default_cost.rate
}

test_free_route_charges_nothing if {
	got := authz.limits with input as key_input("plus", "live", "GET", "/v1/usage")
	got == []
}

test_enterprise_is_unlimited if {
	got := authz.limits with input as key_input("enterprise", "live", "POST", "/v1/audio/generate")
	got == []
}

test_test_keys_have_their_own_counters if {
	got := authz.limits with input as key_input("max", "test", "POST", "/v1/audio/generate")
	got[0].key == "key:{key}:test"
	got[1].key == "site:{site}:test"
}

test_site_override_beats_account_beats_plan if {
	base := key_input("plus", "live", "POST", "/v1/audio/generate")
	acc := with_limits(base, "account", {"rate": 100, "quota": 5000})
	got := authz.limits with input as acc
	got[0].limit == 100
	got[1].limit == 5000

	site := with_limits(acc, "site", {"rate": 7, "burst": 20})
	got2 := authz.limits with input as site
	got2[0].limit == 7
	got2[0].burst == 20
	got2[1].limit == 5000
}

test_override_zero_is_unlimited if {
	req := with_limits(key_input("plus", "live", "POST", "/v1/audio/generate"), "site", {"rate": 0, "quota": 0})
	got := authz.limits with input as req
	got == []
}

test_override_gives_enterprise_a_quota if {
	req := with_limits(key_input("enterprise", "live", "POST", "/v1/audio/generate"), "account", {"quota": 3})
	got := authz.limits with input as req
	[q] := got
	q.limit == 3
}

test_public_routes_charge_nothing if {
	req := object.union(key_input("plus", "live", "GET", "/health"), {"credential": {"status": "missing", "kind": "", "scheme": ""}})
	got := authz.decision with input as object.remove(req, ["key", "site", "account"])
	got.allow
	got.limits == []
}

test_denied_requests_carry_no_limits if {
	req := object.union(key_input("free", "live", "GET", "/v1/videos"), {})
	got := authz.decision with input as req
	not got.allow
	not got.limits
}

test_no_limits_config_means_no_limits if {
	got := authz.limits with input as key_input("plus", "live", "GET", "/v1/videos")
		with data.keygate.config as object.remove(data.keygate.config, ["limits"])
	got == []
}

test_limit_denials if {
	d := authz.limit_denials
	d.RATE_LIMITED.status == 429
	d.RATE_LIMITED.code == "RATE_LIMITED"
	not d.RATE_LIMITED.allow
	d.QUOTA_EXCEEDED.status == 403
	d.QUOTA_EXCEEDED.body == {"code": "QUOTA_EXCEEDED", "message": data.keygate.config.errors.QUOTA_EXCEEDED.message}
}

test_limit_denials_follow_body_shape if {
	d := authz.limit_denials with data.keygate.config.body_shape as "message"
	d.RATE_LIMITED.body == {"message": data.keygate.config.errors.RATE_LIMITED.message}
}

test_missing_error_entry_leaves_deny_to_keygate if {
	d := authz.limit_denials with data.keygate.config as object.remove(data.keygate.config, ["errors"])
	d == {}
}

test_burst_defaults_to_rate if {
	req := with_limits(key_input("plus", "live", "GET", "/v1/videos"), "account", {"rate": 9})
	got := authz.limits with input as req
	got[0].burst == 9
}

test_string_numbers_are_ignored_not_sent if {
	got := authz.limits with input as key_input("plus", "live", "GET", "/v1/videos")
		with data.keygate.config.limits.plans.plus as {"rate": "60"}
	got == []
}

test_quota_counter_template if {
	authz.quota_counter("acme", "test") == "site:acme:test"
	got := authz.limits with input as key_input("plus", "live", "POST", "/v1/audio/generate")
		with data.keygate.config.limits.quota_counter as "q/{mode}/{site}"
	got[1].key == "q/live/{site}"
}

# A prefix matches whole segments: /v1/usage is free, /v1/usage/x too, but
# /v1/usage-export is an ordinary route that pays the default cost.
test_cost_prefix_matches_whole_segments if {
	every path in ["/v1/usage", "/v1/usage/daily"] {
		got := authz.limits with input as key_input("plus", "live", "GET", path)
		got == []
	}
	every path in ["/v1/usage-export", "/v1/usagereport"] {
		got := authz.limits with input as key_input("plus", "live", "GET", path)
		got[0].cost == data.keygate.config.limits.default_cost.rate
	}
}
