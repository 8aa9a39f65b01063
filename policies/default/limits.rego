# Limits: which counters a request charges (rate limits, monthly quotas). The
# decision carries them as "limits"; keygate charges them only on allow and
# refuses the request (429 RATE_LIMITED / 403 QUOTA_EXCEEDED) when one is used
# up. Numbers come from config.limits (data.yaml), overridden per account and
# per site from the store (input.account.limits, input.site.limits).
package keygate.authz

import rego.v1

limits_config := object.get(config, "limits", {})

# METADATA
# title: limits
# description: |
#   The counters this request charges. Key routes only: a rate per key and a
#   monthly quota per site on metered routes, each with its own counters for
#   test keys. Public routes charge nothing.
default limits := []

limits := array.concat(rate_limit, quota_limit) if input.key

# METADATA
# title: limit_value
# description: |
#   A limit by name ("rate", "burst", "quota"): the site's override, else the
#   account's, else the plan's. Undefined when none sets it (no limit).
limit_value(name) := v if {
	v := input.site.limits[name]
} else := v if {
	v := input.account.limits[name]
} else := v if {
	v := limits_config.plans[input.account.plan][name]
}

limit_or(name, def) := v if {
	v := limit_value(name)
} else := def

# METADATA
# title: route_cost
# description: |
#   What this request costs: {"rate": tokens, "quota": metered units}, from
#   the first entry of config.limits.costs whose prefix (and methods, if
#   listed) match, else config.limits.default_cost.
route_cost := limits_config.costs[i] if {
	i := min({j | some j, c in limits_config.costs; cost_matches(c)})
} else := object.get(limits_config, "default_cost", {"rate": 1})

cost_matches(c) if {
	startswith(input.request.path, c.prefix)
	method_matches(c)
}

method_matches(c) if not c.methods

method_matches(c) if input.request.method in c.methods

rate_limit := [{
	"kind": "rate",
	"key": sprintf("key:%s:%s", [input.key.id, input.key.mode]),
	"limit": rate,
	"period": object.get(limits_config.plans, [input.account.plan, "period"], "1m"),
	"burst": burst,
	"cost": cost,
	"deny": limit_deny("RATE_LIMITED", "rate_limit"),
}] if {
	rate := limit_value("rate")
	is_number(rate)
	rate > 0
	cost := object.get(route_cost, "rate", 1)
	cost > 0
	burst := limit_or("burst", rate)
} else := []

quota_limit := [{
	"kind": "quota",
	"key": sprintf("site:%s:%s", [input.site.id, input.key.mode]),
	"limit": quota,
	"period": "month",
	"cost": cost,
	"deny": limit_deny("QUOTA_EXCEEDED", "quota"),
}] if {
	quota := limit_value("quota")
	is_number(quota)
	quota > 0
	cost := object.get(route_cost, "quota", 0)
	cost > 0
} else := []

# The refusal keygate sends when the counter is used up, shaped like every
# other deny; null (keygate's built-in message) if config.errors lacks it.
limit_deny(name, rule) := d if {
	config.errors[name]
	d := deny_with(name, rule)
} else := null
