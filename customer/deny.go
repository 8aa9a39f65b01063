package customer

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/session"
)

// The customer API's refusals, by name: each is a row of config.errors
// (policies/default/data.yaml), so the running policy gives it its status,
// code, message, body shape and content type exactly as it gives Check's
// denials (extauthz.Deny, data.keygate.authz.denials). A policy without the
// row falls back to the built-in policy's; TestEveryRefusalHasABuiltinRow
// keeps that table complete.
const (
	denySession     = "SESSION_INVALID"          // 401: bad, expired or missing session; unknown account
	denyReadOnly    = "SESSION_READ_ONLY"        // 403: a viewer session tried to write
	denyNotFound    = "NOT_FOUND"                // 404: missing and foreign objects alike
	denyInvalid     = "CUSTOMER_INVALID_REQUEST" // 400: the reason goes in "detail"
	denyConflict    = "CONFLICT"                 // 409: a concurrent change
	denyRateLimited = "RATE_LIMITED"             // 429: the account's write rate
	denyUnavailable = "AUTHZ_UNAVAILABLE"        // 503: store, limits or identity provider down
	denyInternal    = "INTERNAL_ERROR"           // 500
)

// refusalNames lists every name refusal can return.
var refusalNames = []string{denySession, denyReadOnly, denyNotFound, denyInvalid, denyConflict,
	denyRateLimited, denyUnavailable, denyInternal}

// refusal names the denial for err, with the reason a client may see
// (bad requests only) and how long to wait (rate limits only).
func refusal(err error) (name, detail string, retry time.Duration) {
	var rl *rateLimited
	var br *badRequest
	var ae *admin.Error
	switch {
	case errors.Is(err, session.ErrInvalid):
		return denySession, "", 0
	case errors.Is(err, errReadOnly):
		return denyReadOnly, "", 0
	case errors.As(err, &rl):
		return denyRateLimited, "", max(rl.retryAfter, time.Second)
	case errors.Is(err, errNotFound), errors.Is(err, keystore.ErrNotFound):
		return denyNotFound, "", 0
	case errors.As(err, &br):
		return denyInvalid, br.msg, 0
	case errors.As(err, &ae):
		return denyInvalid, ae.Message, 0
	case errors.Is(err, keystore.ErrInvalid):
		return denyInvalid, strings.ReplaceAll(err.Error(), "keystore: ", ""), 0
	case errors.Is(err, keystore.ErrConflict):
		return denyConflict, "", 0
	case errors.Is(err, session.ErrUnavailable), errors.Is(err, keystore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return denyUnavailable, "", 0
	}
	return denyInternal, "", 0
}

// denial is the answer to err as the running policy shapes it: the
// policy's deny for the refusal's name, a bad request's reason added as
// "detail" (RFC 9457's member, so a problem body's detail becomes the
// reason), Retry-After on a rate limit, and the proxy's request id in an
// error_object body, as the policy adds it to Check's denials.
func (h *Handler) denial(err error, requestID string) policies.Decision {
	name, detail, retry := refusal(err)
	d := extauthz.Deny(h.decider(), name, "customer_api")
	if detail != "" {
		d.Body = extauthz.WithMember(extauthz.DenyBody(d), nil, "detail", detail)
	}
	if retry > 0 {
		d = extauthz.WithRetryAfter(d, retry)
	}
	if requestID != "" && len(requestID) <= 128 && configString(h.documents(), "body_shape") == "error_object" {
		d.Body = extauthz.WithMember(extauthz.DenyBody(d), []string{"error"}, "request_id", requestID)
	}
	return d
}

// decider is the running policy, or nil (then the built-in denials).
func (h *Handler) decider() extauthz.Decider {
	if h.Policy == nil {
		return nil
	}
	if p := h.Policy.Current(); p != nil {
		return p
	}
	return nil
}

// configString is one string of the policy's data.keygate.config.
func configString(documents map[string]any, name string) string {
	keygate, _ := documents["keygate"].(map[string]any)
	config, _ := keygate["config"].(map[string]any)
	v, _ := config[name].(string)
	return v
}

// documents is the running policy's data (nil without a policy).
func (h *Handler) documents() map[string]any {
	if h.Policy == nil {
		return nil
	}
	if p := h.Policy.Current(); p != nil && p.Bundle != nil {
		return p.Bundle.Documents
	}
	return nil
}
