# Voicgen as its users see it (seed 003).
package keygate.voicgen_test

import rego.v1

import data.keygate.authz

found := {
	"request": {"method": "POST", "host": "api.voicgen.io", "path": "/v1/audio/generate", "query": "", "path_ok": true, "headers": {}},
	"credential": {"status": "found", "kind": "key", "scheme": "x-api-key"},
	"key": {"id": "key_1", "mode": "live", "name": "production", "revoked": false, "expired": false},
	"site": {"id": "blog", "account": "acct", "domains": ["blog.example.com"], "active": true},
	"account": {"id": "acct", "plan": "enterprise", "status": "active"},
}

embed := {
	"request": {
		"method": "GET", "host": "api.voicgen.io", "path": "/v1/public/blog/player", "query": "", "path_ok": true, "headers": {},
		"origin": {"scheme": "https", "host": "blog.example.com", "port": "443", "default_port": true},
	},
	"credential": {"status": "missing", "kind": "", "scheme": ""},
	"public": {
		"status": "found",
		"site": {"id": "blog", "account": "acct", "domains": ["blog.example.com"], "active": true},
		"account": {"id": "acct", "plan": "pro", "status": "active"},
	},
}

decide(inp) := d if {
	d := authz.decision with input as inp
}

outcome(d) := [d.status, d.code, d.message]

test_enterprise_key_allowed if decide(found).allow

test_401s if {
	every change, code in {
		{"credential": {"status": "missing", "kind": "", "scheme": ""}}: "MISSING_API_KEY",
		{"credential": {"scheme": "bearer"}}: "MISSING_API_KEY",
		{"credential": {"status": "unknown"}}: "INVALID_API_KEY",
		{"site": {"active": false}}: "SITE_INACTIVE",
		{"account": {"status": "inactive"}}: "SUBSCRIPTION_INACTIVE",
		{"account": {"status": "trial_expired"}}: "TRIAL_EXPIRED",
	} {
		d := decide(object.union(found, change))
		[d.status, d.code] == [401, code]
	}
}

test_plan_restriction_403 if {
	every plan in ["free", "starter", "plus", "pro", "max"] {
		outcome(decide(object.union(found, {"account": {"plan": plan}}))) == [403, "PLAN_REQUIRED", "Enterprise plan required. REST API access is available on the Enterprise plan."]
	}
}

test_key_scoped_to_its_site if {
	decide(object.union(found, {"request": {"path": "/v1/sites/blog/posts"}})).allow
	outcome(decide(object.union(found, {"request": {"path": "/v1/sites/shop/posts"}}))) == [403, "SITE_MISMATCH", "This API key belongs to another site"]
}

test_public_routes if {
	decide(embed).allow
	outcome(decide(object.union(embed, {"request": {"origin": {"host": "evil.example.com"}}}))) == [403, "DOMAIN_NOT_ALLOWED", "Domain not allowed for this site"]
	outcome(decide(object.union(embed, {"public": {"account": {"status": "inactive"}}}))) == [402, "SUBSCRIPTION_INACTIVE", "Subscription inactive"]
	outcome(decide(object.union(embed, {"public": {"account": {"status": "trial_expired"}}}))) == [402, "TRIAL_EXPIRED", "Trial expired"]
}
