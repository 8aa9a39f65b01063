# METADATA
# title: keygate default authorization policy
# description: |
#   Maps the facts keygate supplies (credential, key, site, account, the site
#   a public route names) to one decision. keygate validates the decision; an
#   undefined or malformed one is a 500 deny, never an allow.
#   Entry point: data.keygate.authz.decision. Every deny names the rule that
#   decided ("rule"); `keygate check` prints that rule's METADATA below.
#   Deployment data (plans, routes, messages) lives in data.yaml.
package keygate.authz

import rego.v1

config := data.keygate.config

# METADATA
# title: default
# description: |
#   No rule decided, or the rule that did produced no document (say a denial
#   whose config.errors entry is missing): 500 POLICY_ERROR, never an allow.
default decision := {
	"allow": false,
	"status": 500,
	"code": "POLICY_ERROR",
	"message": "The policy reached no decision",
	"rule": "default",
}

decision := deny_with(["errors", "INVALID_PATH", "invalid_path"]) if route == "invalid_path"

decision := allow_with({}, "public_route") if route == "public"

decision := site_route_decision if route == "public_site"

decision := key_route_decision if route == "key"

# METADATA
# title: route
# description: |
#   Which kind of route the request is on, first match wins: "invalid_path",
#   "public" (config.routes.public_paths and
#   public_prefixes: no credential), "public_site" (public_site_prefixes:
#   checked by Origin/Referer), else "key". Edit config.routes.
route := "invalid_path" if {
	invalid_path
} else := "public" if {
	public_route
} else := "public_site" if {
	some prefix in config.routes.public_site_prefixes
	path_prefixes[prefix]
} else := "key"

# METADATA
# title: invalid_path
# description: |
#   The path is not in canonical form (dot segments, empty segments, encoded
#   separators, ';', '#', control bytes): 400 INVALID_PATH before any route
#   matching, so "/v1/sites/a/../b" can never pass as site "a".
invalid_path if not input.request.path_ok

# METADATA
# title: invalid_path_case
# description: |
#   Routes are case-sensitive. A path that would match a route prefix only
#   if letter case were ignored ("/V1/SITES/x", "/v1/Audio/generate") is
#   refused (400 INVALID_PATH): a case-insensitive upstream would serve it
#   as that route, so it must not dodge site scoping, plans or costs.
#   keygate lists the data's path strings the path starts with only when
#   case is ignored (input.request.case_folded, absent when none); a test
#   that gives only a path has them computed here.
invalid_path if {
	some prefix in input.request.case_folded
	input.request.prefixes
	route_prefixes[prefix]
}

invalid_path if {
	not input.request.prefixes
	some p in data_paths
	not route_prefix_of(input.request.path, p)
	route_prefix_of(lower(input.request.path), lower(p))
	route_prefixes[p]
}

# Every path prefix a decision depends on (exact public paths included).
route_prefixes contains p if some p in config.routes.public_paths

route_prefixes contains p if some p in config.routes.public_prefixes

route_prefixes contains p if some p in config.routes.public_site_prefixes

route_prefixes contains p if some p in config.routes.site_scoped_prefixes

route_prefixes contains r.prefix if some r in config.routes.plan_routes

route_prefixes contains c.prefix if some c in object.get(config, ["limits", "costs"], [])

# Scope overrides decide which scope a key needs: a case-only spelling of
# one must not fall through to a weaker scope. (A case-only spelling of
# config.scopes.resource_prefix needs no entry: it falls to
# config.scopes.default, which only "*" grants.)
route_prefixes contains r.prefix if some r in object.get(config, ["scopes", "routes"], [])

route_prefixes contains r.path if some r in object.get(config, ["scopes", "routes"], [])

# METADATA
# title: public_route
# description: A path in config.routes.public_paths, or under one of config.routes.public_prefixes, needs no credential.
public_route if exact_path in config.routes.public_paths

public_route if {
	some prefix in config.routes.public_prefixes
	path_prefixes[prefix]
}

# METADATA
# title: path_prefixes
# description: |
#   The path-like strings ("/…") of the policy's data that the request path
#   starts with, each with the path segment that follows it, and exact_path,
#   the path when the data lists it. keygate computes both from the data for
#   every request (input.request.prefixes, input.request.exact_path), so
#   rules that ask only these questions of the path decide
#   /v1/videos/vid_1 and /v1/videos/vid_2 alike and the decision memo
#   ignores the ids; without them (a test giving only a path) they are
#   computed here. A rule may still read input.request.path: keygate then
#   remembers decisions by the whole path.
#
#   (The fallback is an else branch, not a second rule: a decision then
#   evaluates one rule here, not two. Its `not input.request.prefixes`
#   tells keygate's memo analysis that it never holds when keygate decides.)
path_prefixes := input.request.prefixes if {
	input.request.prefixes
} else := {prefix: segment |
	some prefix in data_paths
	route_prefix_of(input.request.path, prefix)
	segment := split(substring(input.request.path, count(prefix), -1), "/")[0]
} if {
	not input.request.prefixes
}

# route_prefix_of: prefix starts path at a segment boundary, as keygate's
# classification does: "/v1/usage" is a prefix of "/v1/usage" and
# "/v1/usage/x", not of "/v1/usage-export"; one ending in "/" is a prefix
# of whatever follows it.
route_prefix_of(path, prefix) if {
	startswith(path, prefix)
	segment_boundary(substring(path, count(prefix), -1), prefix)
}

segment_boundary(rest, _) if rest == ""

segment_boundary(_, prefix) if endswith(prefix, "/")

segment_boundary(rest, _) if startswith(rest, "/")

exact_path := input.request.exact_path if {
	input.request.prefixes
} else := input.request.path if {
	not input.request.prefixes
	input.request.path in data_paths
}

data_paths contains s if {
	walk(config, [_, s])
	is_string(s)
	startswith(s, "/")
}

# Key routes: the first failing check, in this order, decides. A denial
# names an entry of config.errors; should that entry be missing, the deny
# document is undefined and the default (500 POLICY_ERROR) answers: a
# denial can never turn into an allow.
# METADATA
# title: key_route
# description: |
#   A key route (neither public nor a public site route) allows when no
#   key_denial holds, with the key_headers upstream.
key_route_decision := deny_with(key_denial) if {
	key_denial
	not scope_denial
}

key_route_decision := scope_denial_decision if scope_denial

key_route_decision := allow_with(key_headers, "key_route") if not key_denial

# METADATA
# title: key_denial
# description: |
#   Why a key route is refused, first match wins. The order is part of the
#   contract: credential problems before key state, key state before site and
#   account state, entitlements and scoping last.
key_denial := credential_denials[input.credential.status] if {
	input.credential.status in {"ambiguous", "missing"}
} else := ["errors", "CREDENTIAL_NOT_ACCEPTED", "credential_not_accepted"] if {
	credential_not_accepted
} else := object.get(credential_denials, input.credential.status, ["errors", "INVALID_API_KEY", "key_invalid"]) if {
	input.credential.status != "found"
} else := ["errors", "API_KEY_REVOKED", "key_revoked"] if {
	input.key.revoked
} else := ["errors", "API_KEY_EXPIRED", "key_expired"] if {
	input.key.expired
} else := ["errors", "SITE_INACTIVE", "site_inactive"] if {
	not input.site.active
} else := ["errors", "SUBSCRIPTION_INACTIVE", "subscription_inactive"] if {
	input.account.status == "inactive"
} else := ["errors", "TRIAL_EXPIRED", "trial_expired"] if {
	input.account.status == "trial_expired"
} else := ["errors", "PLAN_REQUIRED", "plan_without_api"] if {
	plan_without_api
} else := ["errors", "ROUTE_PLAN_REQUIRED", "route_not_in_plan"] if {
	route_not_in_plan
} else := ["errors", "SITE_MISMATCH", "site_mismatch"] if {
	site_mismatch
} else := ["errors", "MODE_MISMATCH", "mode_mismatch"] if {
	mode_mismatch
} else := ["errors", "IP_NOT_ALLOWED", "ip_not_allowed"] if {
	ip_not_allowed
} else := ["errors", "INSUFFICIENT_SCOPE", "insufficient_scope"] if {
	insufficient_scope
} else := ["errors", "USAGE_EXHAUSTED", "usage_exhausted"] if {
	usage_exhausted
}

# METADATA
# title: credential_denials
# description: |
#   The denial for each credential status but "found" (any other status:
#   INVALID_API_KEY). "ambiguous" and "missing" come before
#   credential_not_accepted, the others after it. (A lookup rather than one
#   key_denial branch per status: an allow then evaluates three branches
#   for the credential, not seven.)
credential_denials := {
	"ambiguous": ["errors", "AMBIGUOUS_CREDENTIALS", "credential_ambiguous"],
	"missing": ["errors", "MISSING_API_KEY", "credential_missing"],
	"unavailable": ["errors", "AUTHZ_UNAVAILABLE", "store_unavailable"],
	"invalid_token": ["errors", "INVALID_TOKEN", "token_invalid"],
	"expired_token": ["errors", "TOKEN_EXPIRED", "token_expired"],
}

# METADATA
# title: credential_not_accepted
# description: |
#   The credential arrived in a way this deployment does not take:
#   config.credentials lists the [scheme, kind] pairs a key route accepts
#   (scheme: bearer, basic, x-api-key, bare or body; kind: key, or token for an access
#   token from /auth/api-key). A scheme not listed at all, or a kind not
#   listed with its scheme, is refused (error CREDENTIAL_NOT_ACCEPTED).
credential_not_accepted if {
	input.credential.scheme != ""
	not accepted_kinds[input.credential.scheme]
}

credential_not_accepted if {
	input.credential.kind != ""
	not accepted_kinds[input.credential.scheme][input.credential.kind]
}

# config.credentials as scheme → the kinds it takes. It reads only data, so
# keygate computes it once per policy load and each decision looks it up.
accepted_kinds := {scheme: {kind | some [s, kind] in config.credentials; s == scheme} |
	some [scheme, _] in config.credentials
}

plan := config.plans[input.account.plan]

# METADATA
# title: plan_without_api
# description: The account's plan is not in config.plans or its "api" is not true (403 PLAN_REQUIRED).
plan_without_api if not plan.api

# METADATA
# title: route_not_in_plan
# description: |
#   The path is under a prefix of config.routes.plan_routes and the account's
#   plan is not among that route's plans (403 PLAN_REQUIRED, its own message).
route_not_in_plan if {
	some r in config.routes.plan_routes
	path_prefixes[r.prefix]
	not input.account.plan in r.plans
}

# METADATA
# title: site_mismatch
# description: A site-scoped path (config.routes.site_scoped_prefixes, /v1/sites/{site}/…) names another site than the key's (403 SITE_MISMATCH).
site_mismatch if {
	some prefix in config.routes.site_scoped_prefixes
	path_prefixes[prefix]
	not own_site_prefixes[prefix]
}

# METADATA
# title: own_site_prefixes
# description: |
#   The prefixes of path_prefixes whose segment is the key's site id.
#   keygate computes them for every request (input.request.own_site_prefixes),
#   so the policy never compares the site id itself and requests from keys
#   of different sites with the same facts share one remembered decision;
#   without them (a test giving only a path) they are computed here.
own_site_prefixes := {prefix | some prefix in input.request.own_site_prefixes} if {
	input.request.prefixes
} else := {prefix | some prefix, segment in path_prefixes; segment == input.site.id} if {
	not input.request.prefixes
}

# METADATA
# title: mode_mismatch
# description: |
#   The request's host is in config.host_modes and the key's mode is not the
#   one that host accepts (a sandbox host takes test keys only, a production
#   host live keys only): 403 MODE_MISMATCH.
mode_mismatch if {
	want := config.host_modes[input.request.host]
	want != input.key.mode
}

# METADATA
# title: key_headers
# description: |
#   Upstream headers the policy adds on a key route allow: the plan's
#   concurrency (x-keygate-concurrency) and config.mode_headers[mode]. The
#   identity headers (account, site, key id, mode, plan) are set by keygate
#   itself and cannot be overridden.
key_headers[name] := value if {
	some name, value in config.mode_headers[input.key.mode]
}

key_headers["x-keygate-concurrency"] := format_int(plan.concurrency, 10) if plan.concurrency

# Public site routes: the site named in the path, checked by the browser's
# Origin (or Referer) against the site's domains.
# METADATA
# title: public_site_route
# description: |
#   A public site route (config.routes.public_site_prefixes, then the site)
#   allows a browser whose origin the site lists when no site_denial holds.
site_route_decision := deny_with(site_denial) if site_denial

site_route_decision := allow_with({}, "public_site_route") if not site_denial

# METADATA
# title: site_denial
# description: |
#   Why a public site route (/v1/public/{site}/…) is refused, first match
#   wins. The domain is checked before the subscription so that an unknown
#   origin learns nothing about the site; a site whose account is not paying
#   answers with config.public_errors (402 by default).
site_denial := ["errors", "AUTHZ_UNAVAILABLE", "public_site_unavailable"] if {
	input.public.status == "unavailable"
} else := ["errors", "DOMAIN_NOT_ALLOWED", "public_site_unknown"] if {
	input.public.status != "found"
} else := ["errors", "DOMAIN_NOT_ALLOWED", "domain_not_allowed"] if {
	not origin_allowed
} else := ["public_errors", "SITE_INACTIVE", "public_site_inactive"] if {
	not input.public.site.active
} else := ["public_errors", "SUBSCRIPTION_INACTIVE", "public_subscription_inactive"] if {
	input.public.account.status == "inactive"
} else := ["public_errors", "TRIAL_EXPIRED", "public_trial_expired"] if {
	input.public.account.status == "trial_expired"
}

# METADATA
# title: origin_allowed
# description: |
#   The request's origin (Origin, else Referer; parsed by keygate) matches one
#   of the site's domains. A domain is "host", "*.host" (any subdomain, never
#   the bare host), optionally with ":port" and/or a "scheme://" in front.
#   Without a port it matches only the scheme's default port; without a
#   scheme, http and https both match. Case does not matter.
origin_allowed if {
	origin := input.request.origin
	origin.scheme in {"http", "https"}
	some domain in input.public.site.domains
	domain_matches(lower(domain), origin)
}

domain_matches(domain, origin) if {
	not contains(domain, "://")
	port_and_host_match(domain, origin)
}

domain_matches(domain, origin) if {
	[scheme, rest] := split(domain, "://")
	scheme == origin.scheme
	port_and_host_match(rest, origin)
}

port_and_host_match(domain, origin) if {
	not contains(domain, ":")
	origin.default_port
	host_matches(domain, origin.host)
}

port_and_host_match(domain, origin) if {
	[host, port] := split(domain, ":")
	port == origin.port
	host_matches(host, origin.host)
}

host_matches(pattern, host) if pattern == host

host_matches(pattern, host) if {
	startswith(pattern, "*.")
	endswith(host, substring(pattern, 1, -1))
}
