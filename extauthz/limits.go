package extauthz

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policies"
)

// Limiter charges the counters an allow decision names; limits.Limiter
// implements it.
type Limiter interface {
	Charge(ctx context.Context, now time.Time, counters []limits.Counter) (limits.Outcome, error)
}

// Response headers of rate-limited routes (draft-ietf-httpapi-ratelimit-headers),
// lower case as Envoy sends them.
const (
	HeaderRateLimit     = "ratelimit-limit"
	HeaderRateRemaining = "ratelimit-remaining"
	HeaderRateReset     = "ratelimit-reset"
	HeaderRatePolicy    = "ratelimit-policy"
	HeaderRetryAfter    = "retry-after"
)

// chargeLimits charges the counters of an allow. It runs only after the
// policy allowed, so a request refused for any other reason costs nothing.
// Each counter's key is the decision's with in's ids filled in ("{key}":
// a remembered decision serves every key with the same facts). It returns
// the allow with RateLimit-* response headers, or the refusal.
func (a *Authorizer) chargeLimits(ctx context.Context, pol Decider, in *policies.Input, d policies.Decision, now time.Time) policies.Decision {
	if len(d.Limits) == 0 {
		return d
	}
	if a.Limits == nil {
		// Nothing to charge, but a limit whose key cannot be filled in is
		// refused all the same, so `keygate check` answers as serve does.
		for _, l := range d.Limits {
			if err := l.CheckCounterKey(in); err != nil {
				return a.limitsRejected(pol, err)
			}
		}
		return d
	}
	counters := make([]limits.Counter, len(d.Limits))
	for i, l := range d.Limits {
		key, err := l.CounterKey(in)
		if err != nil {
			return a.limitsRejected(pol, err)
		}
		counters[i] = limitCounter(l, key)
	}
	out, err := a.Limits.Charge(ctx, now, counters)
	switch {
	case err != nil && (errors.Is(err, limits.ErrUnavailable) || ctx.Err() != nil):
		// The limiter logs the outage once; this is per request.
		a.Log.Debug("limit counters unavailable; denying", "err", err)
		return Deny(pol, denyUnavailable, "limits_unavailable")
	case err != nil:
		return a.limitsRejected(pol, err)
	case out.Denied != nil:
		return limitDenial(pol, d.Limits, counters, *out.Denied, now)
	}
	if h := rateHeaders(out.Results); h != nil {
		if d.ResponseHeaders != nil {
			maps.Copy(h, d.ResponseHeaders) // the policy's own headers win
		}
		d.ResponseHeaders = h
	}
	return d
}

// limitsRejected is the deny for limits the policy should not have asked
// for (a key that cannot be filled in, a counter the limiter refuses).
func (a *Authorizer) limitsRejected(pol Decider, err error) policies.Decision {
	a.Log.Error("policy limits rejected; denying", "err", err)
	return Deny(pol, denyPolicyError, "policy_error")
}

// limitCounter is l's counter under key (l.Key filled in: CounterKey).
func limitCounter(l policies.Limit, key string) limits.Counter {
	c := limits.Counter{Kind: limits.Rate, Key: key, Limit: l.Limit, Burst: l.Burst, Period: l.Period, Cost: l.Cost}
	if l.Kind == "quota" {
		c.Kind = limits.Quota
	}
	return c
}

// rateHeaders reports the tightest rate counter charged: the one with the
// least remaining. Nil when the request charged no rate.
func rateHeaders(results []limits.Result) map[string]string {
	var tight *limits.Result
	for i := range results {
		r := &results[i]
		if r.Counter.Kind == limits.Rate && (tight == nil || r.Remaining < tight.Remaining) {
			tight = r
		}
	}
	if tight == nil {
		return nil
	}
	limit := strconv.FormatInt(tight.Counter.Limit, 10)
	return map[string]string{
		HeaderRateLimit:     limit,
		HeaderRateRemaining: strconv.FormatInt(max(tight.Remaining, 0), 10),
		HeaderRateReset:     seconds(tight.ResetAfter),
		HeaderRatePolicy:    limit + ";w=" + seconds(tight.Counter.Period),
	}
}

// seconds rounds up to whole seconds, as Retry-After and RateLimit-Reset
// want: rounding down would invite a retry that is refused again.
func seconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 0), 10)
}

// limitDenial is the refusal for an exhausted counter: the denial named by
// its code (a rate's default RATE_LIMITED, a quota's QUOTA_EXCEEDED, when
// the code has no row), with Retry-After and RateLimit-* on a rate, and the
// reset time in the body of a quota. counters are ls as charged.
func limitDenial(pol Decider, ls []policies.Limit, counters []limits.Counter, r limits.Result, now time.Time) policies.Decision {
	code := denyRateLimited
	if r.Counter.Kind == limits.Quota {
		code = denyQuotaExceeded
	}
	for i, c := range counters {
		if c.Key == r.Counter.Key && c.Kind == r.Counter.Kind {
			if _, ok := denial(pol, ls[i].Code); ok {
				code = ls[i].Code
			}
			break
		}
	}
	d := Deny(pol, code, strings.ToLower(code))
	var h map[string]string
	if r.Counter.Kind == limits.Rate {
		h = rateHeaders([]limits.Result{r})
		h[HeaderRetryAfter] = seconds(max(r.RetryAfter, time.Second))
	} else {
		h = make(map[string]string, len(d.ResponseHeaders))
		d.Body = WithMember(DenyBody(d), nil, "reset_at", limits.MonthEnd(now).Format(time.RFC3339))
	}
	maps.Copy(h, d.ResponseHeaders)
	d.ResponseHeaders = h
	return d
}
