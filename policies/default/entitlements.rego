# Per-key entitlements: what one key may do below what its site and plan
# allow. keygate hands the policy the key's scopes, allowed_cidrs, meta,
# limits and remaining uses (input.key.*, each absent when the key has
# none) and, for a key with allowed_cidrs, the client's address
# (input.request.client_address). A key with none of them is unrestricted.
# Deployment data lives under config.scopes in data.yaml.
package keygate.authz

import rego.v1

scopes_config := object.get(config, "scopes", {})

# METADATA
# title: insufficient_scope
# description: |
#   The key has scopes and none of them grants the route's required_scope
#   (403 INSUFFICIENT_SCOPE, the required scope in the body as
#   "required_scope"). A scope grants itself; "*" grants every scope;
#   "*:read" grants "<any resource>:read"; "videos:*" grants every action
#   on videos. "videos:write" does not grant "videos:read". A key without
#   scopes is unrestricted.
insufficient_scope if {
	scopes := input.key.scopes
	count(scopes) > 0
	required_scope != ""
	not scope_granted(scopes, required_scope)
}

scope_granted(scopes, s) if s in scopes

scope_granted(scopes, _) if "*" in scopes

scope_granted(scopes, s) if {
	[resource, action] := split(s, ":")
	some granted in [concat(":", ["*", action]), concat(":", [resource, "*"])]
	granted in scopes
}

# METADATA
# title: required_scope
# description: |
#   The scope a scoped key needs for this request, first match wins: none
#   ("") on config.routes.mint_route (the token exchange's question; a token
#   carries its key's scopes, so they apply to its requests); the first entry of config.scopes.routes whose exact "path" or "prefix" (and
#   "methods", if listed) match gives its "scope" ("" means none needed);
#   else, under config.scopes.resource_prefix (/v1/), "<resource>:read" for
#   config.scopes.read_methods (GET, HEAD) and "<resource>:write" for any
#   other method, <resource> being the path segment after the prefix; else
#   config.scopes.default ("*": only a key holding "*").
required_scope := "" if {
	exact_path == config.routes.mint_route
} else := scopes_config.routes[i].scope if {
	i := min({j | some j, r in scopes_config.routes; scope_route_matches(r)})
} else := concat(":", [resource, scope_action]) if {
	resource := path_prefixes[scopes_config.resource_prefix]
	resource != ""
} else := object.get(scopes_config, "default", "*")

scope_route_matches(r) if {
	r.path == exact_path
	method_matches(r)
}

scope_route_matches(r) if {
	path_prefixes[r.prefix]
	method_matches(r)
}

scope_action := "read" if {
	upper(input.request.method) in object.get(scopes_config, "read_methods", ["GET", "HEAD"])
} else := "write"

# METADATA
# title: ip_not_allowed
# description: |
#   The key has allowed_cidrs and the client's address is in none of them,
#   or keygate could not tell the address (403 IP_NOT_ALLOWED). The
#   address is Envoy's source address on gRPC and, on forward-auth, the
#   one derived through --trusted-proxies / --trusted-hops.
ip_not_allowed if {
	cidrs := input.key.allowed_cidrs
	count(cidrs) > 0
	not client_allowed(cidrs)
}

client_allowed(cidrs) if {
	some cidr in cidrs
	net.cidr_is_valid(cidr) # keygate validates them when stored; a bad one grants nothing
	net.cidr_contains(cidr, input.request.client_address)
}

# METADATA
# title: usage_exhausted
# description: |
#   The key was created with a number of uses, none is left, and the
#   request is on a metered route, the only ones that spend a use (403
#   USAGE_EXHAUSTED; other routes still answer). keygate spends a use on
#   every allowed request that spend_use marks, after the limits passed,
#   exactly once across replicas.
usage_exhausted if {
	input.key.remaining <= 0
	object.get(route_cost, "quota", 0) > 0
}

# METADATA
# title: spend_use
# description: |
#   Whether an allow spends one of the key's remaining uses: on the metered
#   routes, the same requests that charge the monthly quota (a route whose
#   config.limits.costs entry has "quota" above 0). Keys without uses spend
#   nothing.
default spend_use := false

spend_use if {
	route == "key"
	is_number(input.key.remaining)
	object.get(route_cost, "quota", 0) > 0
}

# METADATA
# title: meta_headers
# description: |
#   The key's meta entries go upstream as x-keygate-meta-<name>. keygate
#   strips every x-keygate-* header the client sent, so the upstream can
#   trust them.
key_headers[name] := value if {
	some k, value in input.key.meta
	name := concat("", ["x-keygate-meta-", k])
}

# scope_denial: the key route's denial is INSUFFICIENT_SCOPE, whose body
# names the scope the route requires ("required_scope").
scope_denial if key_denial[1] == "INSUFFICIENT_SCOPE"

# The denial is named by constants, not through key_denial, so that it is
# shaped once from the data (keygate's memo analysis evaluates the policy
# with the input unknown, and a denial named by an unknown expands into one
# branch per config.errors entry).
scope_denial_decision := object.union(d, {"body": object.union(d.body, {"required_scope": required_scope})}) if {
	d := deny_with(["errors", "INSUFFICIENT_SCOPE", "insufficient_scope"])
}
