package extauthz

import (
	"encoding/json"
	"maps"
	"time"

	"github.com/keygate/keygate/policies"
)

// Denials that keygate's Go code refines after the policy shaped them (a
// quota's reset time, a customer API refusal's reason or wait) are edited
// here, so every caller adds a body member or a Retry-After the same way.

// WithMember returns body with member name set to value in the JSON object
// at path (the top level for none). A body that is not such an object (a
// policy's own "body" of another form) is returned unchanged: the policy's
// shape wins over keygate's addition.
func WithMember(body []byte, path []string, name, value string) []byte {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return body
	}
	if len(path) == 0 {
		v, _ := json.Marshal(value) // a string always marshals
		obj[name] = v
	} else {
		inner, ok := obj[path[0]]
		if !ok {
			return body
		}
		edited := WithMember(inner, path[1:], name, value)
		if string(edited) == string(inner) {
			return body
		}
		obj[path[0]] = edited
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return body
	}
	return out
}

// WithRetryAfter returns d with a Retry-After of wait, rounded up to whole
// seconds. The policy's header map is shared between decisions, so it is
// copied, never written.
func WithRetryAfter(d policies.Decision, wait time.Duration) policies.Decision {
	h := make(map[string]string, len(d.ResponseHeaders)+1)
	maps.Copy(h, d.ResponseHeaders)
	h[HeaderRetryAfter] = seconds(wait)
	d.ResponseHeaders = h
	return d
}
