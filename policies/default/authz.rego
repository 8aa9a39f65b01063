# METADATA
# title: keygate default authorization policy
# description: |
#   Maps the facts keygate supplies (credential, key, site, account, the site
#   a public route names) to one decision. keygate validates the decision; an
#   undefined or malformed one is a 500 deny, never an allow.
#   Entry point: data.keygate.authz.decision.
package keygate.authz

import rego.v1

config := data.keygate.config

# The decision when no rule below decides: deny.
default decision := {
	"allow": false,
	"status": 500,
	"code": "POLICY_ERROR",
	"message": "The policy reached no decision",
	"rule": "default",
}

# A request whose path is not in canonical form is refused before any route
# matching, so "/v1/sites/a/../b" can never pass as site "a".
decision := deny_with("INVALID_PATH", "path") if not input.request.path_ok

decision := allow_with({}, "public_route") if {
	input.request.path_ok
	route == "public"
}

decision := site_route_decision if {
	input.request.path_ok
	route == "public_site"
}

decision := key_route_decision if {
	input.request.path_ok
	route == "key"
}

# METADATA
# title: route
# description: Which kind of route the request is on. Edit config.routes.
default route := "key"

route := "public" if input.request.path in config.routes.public_paths

route := "public" if {
	some prefix in config.routes.public_prefixes
	startswith(input.request.path, prefix)
}

route := "public_site" if {
	not input.request.path in config.routes.public_paths
	not public_prefixed
	some prefix in config.routes.public_site_prefixes
	startswith(input.request.path, prefix)
}

public_prefixed if {
	some prefix in config.routes.public_prefixes
	startswith(input.request.path, prefix)
}

# Key routes: the first failing check, in this order, decides.
key_route_decision := key_denial if key_denial

key_route_decision := allow_with(key_headers, "key_route") if not key_denial

# METADATA
# title: key_denial
# description: |
#   Why a key route is refused, first match wins. The order is part of the
#   contract: credential problems before key state, key state before account
#   state, entitlements last.
key_denial := deny_with("AMBIGUOUS_CREDENTIALS", "credential") if {
	input.credential.status == "ambiguous"
} else := deny_with("MISSING_API_KEY", "credential") if {
	input.credential.status == "missing"
} else := deny_with("AUTHZ_UNAVAILABLE", "credential") if {
	input.credential.status == "unavailable"
} else := deny_with("INVALID_TOKEN", "credential") if {
	input.credential.status == "invalid_token"
} else := deny_with("TOKEN_EXPIRED", "credential") if {
	input.credential.status == "expired_token"
} else := deny_with("INVALID_API_KEY", "credential") if {
	input.credential.status != "found"
} else := deny_with("API_KEY_REVOKED", "key") if {
	input.key.revoked
} else := deny_with("API_KEY_EXPIRED", "key") if {
	input.key.expired
} else := deny_with("SITE_INACTIVE", "site") if {
	not input.site.active
} else := deny_with("SUBSCRIPTION_INACTIVE", "account") if {
	input.account.status == "inactive"
} else := deny_with("TRIAL_EXPIRED", "account") if {
	input.account.status == "trial_expired"
} else := deny_with("PLAN_REQUIRED", "plan") if {
	not plan.api
} else := deny_with("ROUTE_PLAN_REQUIRED", "plan_route") if {
	not route_entitled
} else := deny_with("SITE_MISMATCH", "site_scope") if {
	site_mismatch
} else := deny_with("MODE_MISMATCH", "host_mode") if {
	mode_mismatch
}

plan := config.plans[input.account.plan]

# METADATA
# title: route_entitled
# description: A route listed in config.routes.plan_routes is open only to the plans it names.
default route_entitled := true

route_entitled := false if {
	some r in config.routes.plan_routes
	startswith(input.request.path, r.prefix)
	not input.account.plan in r.plans
}

# METADATA
# title: site_mismatch
# description: A site-scoped path (/v1/sites/{site}/…) must name the key's own site.
site_mismatch if {
	some prefix in config.routes.site_scoped_prefixes
	startswith(input.request.path, prefix)
	path_site(prefix) != input.site.id
}

path_site(prefix) := split(substring(input.request.path, count(prefix), -1), "/")[0]

# METADATA
# title: mode_mismatch
# description: A host listed in config.host_modes accepts only keys of its mode.
mode_mismatch if {
	want := config.host_modes[input.request.host]
	want != input.key.mode
}

# Identity headers (account, site, key id, mode, plan) are set by keygate
# from its facts; the policy adds what the plan data knows.
default key_headers := {}

key_headers := {"x-keygate-concurrency": format_int(plan.concurrency, 10)} if plan.concurrency

# Public site routes: the site named in the path, checked by the browser's
# Origin (or Referer) against the site's domains.
site_route_decision := site_denial if site_denial

site_route_decision := allow_with({}, "public_site_route") if not site_denial

# METADATA
# title: site_denial
# description: |
#   Why a public site route is refused. The domain is checked before the
#   subscription so that an unknown origin learns nothing about the site.
site_denial := deny_with("AUTHZ_UNAVAILABLE", "public_site") if {
	input.public.status == "unavailable"
} else := deny_with("DOMAIN_NOT_ALLOWED", "public_site") if {
	input.public.status != "found"
} else := deny_with("DOMAIN_NOT_ALLOWED", "domain") if {
	not origin_allowed
} else := public_deny_with("SITE_INACTIVE", "public_site") if {
	not input.public.site.active
} else := public_deny_with("SUBSCRIPTION_INACTIVE", "public_account") if {
	input.public.account.status == "inactive"
} else := public_deny_with("TRIAL_EXPIRED", "public_account") if {
	input.public.account.status == "trial_expired"
}

# METADATA
# title: origin_allowed
# description: |
#   The request's origin (from Origin, else Referer; parsed by keygate) matches
#   one of the site's domains: exactly, or by a "*." wildcard that matches
#   subdomains but not the bare domain. A domain without a port matches only
#   the scheme's default port; "host:port" matches that port.
origin_allowed if {
	origin := input.request.origin
	origin.scheme in {"http", "https"}
	some domain in input.public.site.domains
	domain_matches(domain, origin)
}

domain_matches(domain, origin) if {
	not contains(domain, ":")
	origin.default_port
	host_matches(domain, origin.host)
}

domain_matches(domain, origin) if {
	[host, port] := split(domain, ":")
	port == origin.port
	host_matches(host, origin.host)
}

host_matches(pattern, host) if pattern == host

host_matches(pattern, host) if {
	startswith(pattern, "*.")
	endswith(host, substring(pattern, 1, -1))
}

# Deny and allow documents.
deny_with(name, rule) := shaped(config.errors[name], name, rule)

public_deny_with(name, rule) := shaped(config.public_errors[name], name, rule)

shaped(e, name, rule) := {
	"allow": false,
	"status": e.status,
	"code": object.get(e, "code", name),
	"message": e.message,
	"rule": rule,
	"body": body(object.get(e, "code", name), e.message),
}

body(code, message) := {"code": code, "message": message} if config.body_shape == "code_message"

body(_, message) := {"message": message} if config.body_shape == "message"

body(code, message) := {"error": {"code": code, "message": message}} if config.body_shape == "error_object"

allow_with(headers, rule) := {
	"allow": true,
	"status": 200,
	"headers": headers,
	"rule": rule,
	"limits": limits,
}
