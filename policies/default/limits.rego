# Limits: which counters a request charges (rate limits, monthly quotas). The
# decision carries them as "limits"; keygate charges them only on allow and
# refuses the request when one is used up, with the deny in limit_denials.
# Numbers come from config.limits (data.yaml), overridden per account and per
# site from the store (input.account.limits, input.site.limits).
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

limits := array.concat(rate_limit, quota_limit) if {
	input.key.mode
	route == "key"
}

# METADATA
# title: effective_limits
# description: |
#   The plan's limits ("rate", "period", "burst", "quota"), overridden by the
#   account's, overridden by the site's, overridden by the key's (key beats
#   site beats account beats plan). A name nobody sets has no limit.
effective_limits := object.union(
	object.union(
		object.union(object.get(limits_config, ["plans", input.account.plan], {}), account_limits),
		site_limits,
	),
	key_limits,
)

# Each level's own limits, {} when it sets none. They are read field by
# field, never as object.get(input.key, …): a policy that reads the whole
# key, site or account reads their ids too, and keygate then remembers its
# decisions per key instead of per set of facts (the memo's analysis).
default account_limits := {}

account_limits := input.account.limits

default site_limits := {}

site_limits := input.site.limits

default key_limits := {}

key_limits := input.key.limits

# METADATA
# title: route_cost
# description: |
#   What this request costs: {"rate": tokens, "quota": metered units}, from
#   the first entry of config.limits.costs whose prefix (and methods, if
#   listed) match, else config.limits.default_cost.
route_cost := limits_config.costs[i] if {
	i := min({j | some j, c in limits_config.costs; path_prefixes[c.prefix]; method_matches(c)})
} else := object.get(limits_config, "default_cost", {"rate": 1})

method_matches(c) if not c.methods

# Methods compare upper-cased: an upstream that takes "post" for POST must
# not let it dodge a cost or a scope listed for POST.
method_matches(c) if upper(input.request.method) in c.methods

# METADATA
# title: quota_counter
# description: |
#   The name of a site's monthly quota counter for one key mode:
#   config.limits.quota_counter with {site} and {mode} filled in. keygate
#   reads the same template to show a site's usage (admin API, CLI).
quota_counter(site, mode) := replace(replace(quota_counter_template, "{site}", site), "{mode}", mode)

# Counter keys name the key, its site and its account as "{key}", "{site}"
# and "{account}": keygate puts the request's ids in when it charges the
# counter (and fills "{mode}" too, should a key leave it). The policy then
# never reads an id, so requests from different keys with the same facts
# share one remembered decision instead of being evaluated once per key.

default quota_counter_template := "site:{site}:{mode}"

quota_counter_template := limits_config.quota_counter if is_string(limits_config.quota_counter)

rate_limit := [{
	"kind": "rate",
	"key": concat(":", ["key", "{key}", input.key.mode]),
	"limit": rate,
	"period": object.get(effective_limits, "period", "1m"),
	"burst": object.get(effective_limits, "burst", rate),
	"cost": cost,
}] if {
	rate := effective_limits.rate
	is_number(rate)
	rate > 0
	cost := object.get(route_cost, "rate", 1)
	cost > 0
} else := []

quota_limit := [{
	"kind": "quota",
	"key": quota_key,
	"limit": quota,
	"period": "month",
	"cost": cost,
}] if {
	quota := effective_limits.quota
	is_number(quota)
	quota > 0
	cost := object.get(route_cost, "quota", 0)
	cost > 0
} else := []

# METADATA
# title: limit_denials
# description: |
#   The refusal for each limit code (a counter's "code", by default
#   RATE_LIMITED for rates and QUOTA_EXCEEDED for quotas), shaped like every
#   other deny. keygate evaluates this once per policy load, so it must not
#   read input; a code missing here gets keygate's built-in message.
limit_denials[name] := deny_with(["errors", name, lower(name)]) if {
	some name in {"RATE_LIMITED", "QUOTA_EXCEEDED"}
	config.errors[name]
}

# METADATA
# title: quota_key
# description: |
#   The quota counter a request charges: the site's (quota_counter), or,
#   for a key with a quota of its own (input.key.limits.quota), the key's
#   own monthly counter "key:<id>:<mode>:quota", which replaces the site's
#   for that key's requests. (A key's rate is always its own counter.) The
#   ids are left for keygate to fill ("{key}", "{site}").
quota_key := concat(":", ["key", "{key}", input.key.mode, "quota"]) if {
	is_number(input.key.limits.quota)
} else := quota_counter("{site}", input.key.mode)
