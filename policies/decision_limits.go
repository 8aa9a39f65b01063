package policies

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Limit is one counter an allow decision charges, from the decision's
// "limits" array:
//
//	{"kind": "rate", "key": "key:key_1:live", "limit": 60, "period": "1m", "burst": 60, "cost": 1}
//	{"kind": "quota", "key": "site:acme:live", "limit": 1000, "period": "month", "cost": 1}
//
// keygate charges the counters only when the decision allows, and refuses
// the request when one is exhausted with the policy's limit_denials[Code].
type Limit struct {
	// Kind is "rate" (GCRA: Limit per Period, bursts up to Burst) or
	// "quota" (Limit per calendar month, UTC).
	Kind string
	// Key names the counter; live and test traffic should use different keys.
	Key    string
	Limit  int64
	Burst  int64         // rate only; 0 means Limit
	Period time.Duration // rate only
	Cost   int64
	// Code names the refusal (default RATE_LIMITED for a rate,
	// QUOTA_EXCEEDED for a quota).
	Code string
}

// MarshalJSON writes the limit as the policy wrote it (period "1m0s" or
// "month"), for `keygate check`.
func (l Limit) MarshalJSON() ([]byte, error) {
	period := "month"
	if l.Kind == "rate" {
		period = l.Period.String()
	}
	return json.Marshal(struct {
		Kind   string `json:"kind"`
		Key    string `json:"key"`
		Limit  int64  `json:"limit"`
		Burst  int64  `json:"burst,omitempty"`
		Period string `json:"period"`
		Cost   int64  `json:"cost"`
		Code   string `json:"code"`
	}{l.Kind, l.Key, l.Limit, l.Burst, period, l.Cost, l.Code})
}

// Bounds on what a policy may ask keygate to count.
const (
	maxLimits      = 8
	maxLimitKey    = 200
	maxLimitNumber = 1_000_000_000_000
	minRatePeriod  = time.Second
	maxRatePeriod  = 31 * 24 * time.Hour
)

var defaultLimitCodes = map[string]string{"rate": "RATE_LIMITED", "quota": "QUOTA_EXCEEDED"}

// limitsField validates the decision's "limits" array (absent or null: none).
func limitsField(doc map[string]any) ([]Limit, error) {
	raw, ok := doc["limits"]
	if !ok || raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok || len(list) > maxLimits {
		return nil, fmt.Errorf("%w: limits must be an array of at most %d counters", ErrPolicy, maxLimits)
	}
	if len(list) == 0 {
		return nil, nil
	}
	out := make([]Limit, 0, len(list))
	for i, v := range list {
		l, err := parseLimit(v)
		if err != nil {
			return nil, fmt.Errorf("%w (limits[%d])", err, i)
		}
		out = append(out, l)
	}
	return out, nil
}

func parseLimit(v any) (Limit, error) {
	doc, ok := v.(map[string]any)
	if !ok {
		return Limit{}, fmt.Errorf("%w: a limit must be an object", ErrPolicy)
	}
	var l Limit
	var err error
	if l.Kind, err = strField(doc, "kind", 16); err != nil {
		return Limit{}, err
	}
	if l.Key, err = strField(doc, "key", maxLimitKey); err != nil {
		return Limit{}, err
	}
	if l.Key == "" || strings.ContainsAny(l.Key, " \t") {
		return Limit{}, fmt.Errorf("%w: a limit needs a key without spaces", ErrPolicy)
	}
	if l.Limit, err = numberField(doc, "limit", 1, 1); err != nil {
		return Limit{}, err
	}
	if l.Cost, err = numberField(doc, "cost", 0, 1); err != nil {
		return Limit{}, err
	}
	period, err := strField(doc, "period", 16)
	if err != nil {
		return Limit{}, err
	}
	switch l.Kind {
	case "rate":
		if l.Burst, err = numberField(doc, "burst", 1, 0); err != nil {
			return Limit{}, err
		}
		if l.Period, err = time.ParseDuration(period); err != nil || l.Period < minRatePeriod || l.Period > maxRatePeriod {
			return Limit{}, fmt.Errorf("%w: a rate's period must be a duration from 1s to 744h, like \"1m\", got %q", ErrPolicy, period)
		}
	case "quota":
		if period != "month" && period != "" {
			return Limit{}, fmt.Errorf("%w: a quota's period must be \"month\", got %q", ErrPolicy, period)
		}
	default:
		return Limit{}, fmt.Errorf("%w: a limit's kind must be \"rate\" or \"quota\", got %q", ErrPolicy, l.Kind)
	}
	if l.Code, err = strField(doc, "code", 64); err != nil {
		return Limit{}, err
	}
	if l.Code == "" {
		l.Code = defaultLimitCodes[l.Kind]
	}
	if !validCode(l.Code) {
		return Limit{}, fmt.Errorf("%w: a limit's code must be A-Z, 0-9 and _, got %q", ErrPolicy, l.Code)
	}
	return l, nil
}

// numberField reads an integer from 0 to 10^12; a missing field is def, a
// value below min is an error.
func numberField(doc map[string]any, name string, min, def int64) (int64, error) {
	raw, ok := doc[name]
	if !ok {
		return def, nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return 0, fmt.Errorf("%w: %s must be a number", ErrPolicy, name)
	}
	i, err := n.Int64()
	if err != nil || i < min || i > maxLimitNumber {
		return 0, fmt.Errorf("%w: %s must be an integer from %d to %d", ErrPolicy, name, min, int64(maxLimitNumber))
	}
	return i, nil
}
