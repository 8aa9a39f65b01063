package policies

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Decision is a validated policy decision.
type Decision struct {
	Allow   bool
	Status  int
	Code    string
	Message string
	// Headers go to the upstream on allow.
	Headers map[string]string
	// ResponseHeaders go to the client: on the denied response, or added to
	// the upstream's response on allow.
	ResponseHeaders map[string]string
	// Body replaces the default {"code","message"} deny body. Kept as
	// encoded JSON: it is validated once and sent as is.
	Body []byte
	// ContentType is the deny body's media type: application/json (the
	// default when empty) or an application/…+json type such as RFC 9457's
	// application/problem+json.
	ContentType string
	// Rule names the rule that decided, for `keygate check` and logs.
	Rule string
	// Limits are the counters an allow charges (see decision_limits.go).
	Limits []Limit
	// KeepCredentials lets the credential headers through to the upstream
	// on allow; by default keygate removes them.
	KeepCredentials bool
	// SpendUse asks keygate to spend one of the key's remaining uses
	// ("spend_use") once the allow has passed its limits; a key whose uses
	// another replica just spent is then refused USAGE_EXHAUSTED.
	SpendUse bool
}

// ErrPolicy marks a decision document that is missing or malformed; the
// caller turns it into a 500 POLICY_ERROR deny.
var ErrPolicy = errors.New("policies: invalid decision")

// Bounds on what a policy may ask keygate to send.
const (
	maxHeaders     = 32
	maxHeaderValue = 4096
	maxMessage     = 1024
	maxBody        = 16 << 10
)

// parseDecision validates the decision document a policy produced. Anything
// unexpected is an error: a decision is never guessed.
func parseDecision(v any) (Decision, error) {
	doc, ok := v.(map[string]any)
	if !ok {
		return Decision{}, fmt.Errorf("%w: want an object, got %T", ErrPolicy, v)
	}
	var d Decision
	allow, ok := doc["allow"].(bool)
	if !ok {
		return Decision{}, fmt.Errorf("%w: allow must be a boolean", ErrPolicy)
	}
	d.Allow = allow
	status, err := intField(doc, "status")
	if err != nil {
		return Decision{}, err
	}
	switch {
	case status == 0 && allow:
		status = 200
	case allow && status != 200:
		return Decision{}, fmt.Errorf("%w: an allow must have status 200, got %d", ErrPolicy, status)
	case !allow && (status < 400 || status > 599):
		return Decision{}, fmt.Errorf("%w: a deny needs a status in 400..599, got %d", ErrPolicy, status)
	}
	d.Status = status
	if d.Code, err = strField(doc, "code", 64); err != nil {
		return Decision{}, err
	}
	if !allow && !validCode(d.Code) {
		return Decision{}, fmt.Errorf("%w: a deny needs a code of A-Z, 0-9 and _, got %q", ErrPolicy, d.Code)
	}
	if d.Message, err = strField(doc, "message", maxMessage); err != nil {
		return Decision{}, err
	}
	if d.Rule, err = strField(doc, "rule", 128); err != nil {
		return Decision{}, err
	}
	if keep, ok := doc["keep_credentials"]; ok {
		if d.KeepCredentials, ok = keep.(bool); !ok {
			return Decision{}, fmt.Errorf("%w: keep_credentials must be a boolean", ErrPolicy)
		}
	}
	if spend, ok := doc["spend_use"]; ok {
		if d.SpendUse, ok = spend.(bool); !ok {
			return Decision{}, fmt.Errorf("%w: spend_use must be a boolean", ErrPolicy)
		}
	}
	if d.Headers, err = headerField(doc, "headers"); err != nil {
		return Decision{}, err
	}
	if d.ResponseHeaders, err = headerField(doc, "response_headers"); err != nil {
		return Decision{}, err
	}
	if b, ok := doc["body"]; ok && b != nil {
		if _, isObj := b.(map[string]any); !isObj {
			return Decision{}, fmt.Errorf("%w: body must be an object", ErrPolicy)
		}
		if d.Body, err = json.Marshal(b); err != nil || len(d.Body) > maxBody {
			return Decision{}, fmt.Errorf("%w: body must be a JSON object under %d bytes", ErrPolicy, maxBody)
		}
	}
	if d.ContentType, err = strField(doc, "content_type", 128); err != nil {
		return Decision{}, err
	}
	if !validContentType(d.ContentType) {
		return Decision{}, fmt.Errorf("%w: content_type must be application/json or application/<name>+json, got %q", ErrPolicy, d.ContentType)
	}
	if d.Limits, err = limitsField(doc); err != nil {
		return Decision{}, err
	}
	return d, nil
}

func intField(doc map[string]any, name string) (int, error) {
	raw, ok := doc[name]
	if !ok {
		return 0, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%w: %s must be a number", ErrPolicy, name)
	}
	i, err := n.Int64()
	if err != nil || i < 0 || i > 999 {
		return 0, fmt.Errorf("%w: %s must be an integer status", ErrPolicy, name)
	}
	return int(i), nil
}

func strField(doc map[string]any, name string, max int) (string, error) {
	raw, ok := doc[name]
	if !ok {
		return "", nil
	}
	s, ok := raw.(string)
	if !ok || len(s) > max || strings.ContainsAny(s, "\x00\r\n") {
		return "", fmt.Errorf("%w: %s must be a single-line string of at most %d bytes", ErrPolicy, name, max)
	}
	return s, nil
}

// validContentType accepts "" (the default), application/json and the
// structured-syntax +json types (RFC 6839): the body is always JSON.
func validContentType(t string) bool {
	if t == "" || t == "application/json" {
		return true
	}
	name, ok := strings.CutPrefix(t, "application/")
	name, json := strings.CutSuffix(name, "+json")
	if !ok || !json || name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

func validCode(c string) bool {
	if c == "" {
		return false
	}
	for i := 0; i < len(c); i++ {
		if (c[i] < 'A' || c[i] > 'Z') && (c[i] < '0' || c[i] > '9') && c[i] != '_' {
			return false
		}
	}
	return true
}

func headerField(doc map[string]any, name string) (map[string]string, error) {
	raw, ok := doc[name]
	if !ok || raw == nil {
		return nil, nil
	}
	m, ok := raw.(map[string]any)
	if !ok || len(m) > maxHeaders {
		return nil, fmt.Errorf("%w: %s must be an object of at most %d headers", ErrPolicy, name, maxHeaders)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		s, ok := v.(string)
		if !ok || !ValidHeaderName(k) || !validHeaderValue(s) {
			return nil, fmt.Errorf("%w: %s: header %q must be a lower-case token with a string value", ErrPolicy, name, k)
		}
		out[k] = s
	}
	return out, nil
}

// ValidHeaderName accepts lower-case RFC 9110 tokens that a policy may set:
// never pseudo-headers, host, or Envoy's own x-envoy-* headers.
func ValidHeaderName(k string) bool {
	if k == "" || len(k) > 128 || k == "host" || strings.HasPrefix(k, "x-envoy-") {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

func validHeaderValue(v string) bool {
	if len(v) > maxHeaderValue {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < ' ' && v[i] != '\t' || v[i] == 0x7f {
			return false
		}
	}
	return true
}
