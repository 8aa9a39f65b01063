package extauthz

import (
	"github.com/keygate/keygate/policies"
)

// The denials keygate makes itself, by name. Each name is a row of
// config.errors in policies/default/data.yaml: the policy's data gives it
// its status, code, message, body shape and content type, like every deny
// the policy decides. Adding one is that row plus a name here.
const (
	denyUnavailable    = "AUTHZ_UNAVAILABLE"          // timeout, store or limit store down
	denyInternal       = "INTERNAL_ERROR"             // a panic, a broken invariant
	denyPolicyError    = "POLICY_ERROR"               // the policy gave no valid decision
	denyForwardAuth    = "FORWARD_AUTH_MISCONFIGURED" // the proxy sent no original request
	denyMissingKey     = "MISSING_API_KEY"
	denyInvalidRequest = "INVALID_REQUEST" // token exchange: body or content type
	denyMethod         = "METHOD_NOT_ALLOWED"
	denyThrottled      = "EXCHANGE_THROTTLED"
	denyTokenNotKey    = "TOKEN_NOT_ACCEPTED" // an access token sent to mint tokens
	denyRefreshInvalid = "INVALID_REFRESH_TOKEN"
	denyRefreshExpired = "REFRESH_TOKEN_EXPIRED"
	denyRateLimited    = "RATE_LIMITED"   // a rate counter's default code
	denyQuotaExceeded  = "QUOTA_EXCEEDED" // a quota counter's default code
)

// denialTable is the part of a policy that shapes keygate's own denials;
// policies.Policy implements it.
type denialTable interface {
	Denial(name string) (policies.Decision, bool)
}

// Deny is the decision for a deny keygate makes itself: the entry for name
// in the request's policy, so the deployment's shape applies; the built-in
// policy's entry when that policy has no such entry (a whole policy without
// a denials table, or one whose data is broken there); and a bare 500 when
// neither knows the name, which TestEveryDenialHasARow rules out. rule says
// where it came from, for logs and `keygate check`.
func Deny(p Decider, name, rule string) policies.Decision {
	d, ok := denial(p, name)
	if !ok {
		d = policies.Decision{Status: 500, Code: "INTERNAL_ERROR", Message: "Internal authorization error"}
	}
	d.Rule = rule
	return d
}

// denial looks name up in p's table, then in the built-in one.
func denial(p Decider, name string) (policies.Decision, bool) {
	if t, ok := p.(denialTable); ok {
		if d, found := t.Denial(name); found {
			return d, true
		}
	}
	return policies.BuiltinDenial(name)
}

// contentType is the deny body's media type.
func contentType(d policies.Decision) string {
	if d.ContentType != "" {
		return d.ContentType
	}
	return "application/json"
}
