package admin

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policies"
)

// SiteUsage is a site's quota usage in one calendar month (UTC), per mode.
type SiteUsage struct {
	Site     string      `json:"site"`
	Period   string      `json:"period"`
	ResetsAt time.Time   `json:"resets_at"`
	Usage    []ModeUsage `json:"usage"`
}

// ModeUsage is one quota counter's usage.
type ModeUsage struct {
	Mode    string `json:"mode"`
	Counter string `json:"counter"`
	Used    int64  `json:"used"`
	// Quota is the limit in force at the last charge (0: never charged).
	Quota     int64 `json:"quota"`
	Remaining int64 `json:"remaining"`
}

// CounterNames names the counters the policy charges; policies.Engine
// implements it.
type CounterNames interface {
	QuotaCounter(site, mode string) string
}

// quotaCounter is names' name for a site's quota counter, or the built-in
// policy's when names is nil.
func quotaCounter(names CounterNames, site, mode string) string {
	if names == nil {
		return strings.NewReplacer("{site}", site, "{mode}", mode).Replace(policies.DefaultQuotaCounter)
	}
	return names.QuotaCounter(site, mode)
}

// ReadSiteUsage reads a site's live and test usage in the month of at. The
// counters are the default policy's ("site:<id>:<mode>", limits.rego).
func ReadSiteUsage(ctx context.Context, st *keystore.Store, names CounterNames, site string, at time.Time) (SiteUsage, error) {
	period := limits.Month(at)
	out := SiteUsage{Site: site, Period: period, ResetsAt: limits.MonthEnd(at), Usage: []ModeUsage{}}
	if _, err := st.Site(ctx, site); err != nil {
		return out, err
	}
	for _, mode := range []keystore.Mode{keystore.ModeLive, keystore.ModeTest} {
		u := ModeUsage{Mode: string(mode), Counter: quotaCounter(names, site, string(mode))}
		rows, err := st.QuotaUsage(ctx, period, u.Counter)
		if err != nil {
			return out, err
		}
		if len(rows) == 1 {
			u.Used, u.Quota, u.Remaining = rows[0].Used, rows[0].Quota, max(rows[0].Quota-rows[0].Used, 0)
		}
		out.Usage = append(out.Usage, u)
	}
	return out, nil
}

// UsageMonth is the month a usage request asks for (?month=YYYY-MM), or
// now's when it names none.
func UsageMonth(r *http.Request, now time.Time) (time.Time, error) {
	m := r.URL.Query().Get("month")
	if m == "" {
		return now, nil
	}
	t, err := time.Parse("2006-01", m)
	if err != nil {
		return time.Time{}, invalid(`"month" must be YYYY-MM`)
	}
	return t, nil
}

func (h *Handler) siteUsage(ctx context.Context, r *http.Request) (int, any, error) {
	at, err := UsageMonth(r, time.Now())
	if err != nil {
		return 0, nil, err
	}
	var names CounterNames // nil: the built-in policy's counter names
	if h.Policy != nil {
		names = h.Policy
	}
	u, err := ReadSiteUsage(ctx, h.Store, names, r.PathValue("id"), at)
	if err == nil && h.Policy != nil {
		err = EffectiveQuota(ctx, h.Store, h.Policy.Current(), &u)
	}
	return http.StatusOK, u, err
}

func (h *Handler) limitsOf(entity keystore.Entity) endpoint {
	return func(ctx context.Context, r *http.Request) (int, any, error) {
		l, err := h.Store.LimitsOf(ctx, entity, r.PathValue("id"))
		return http.StatusOK, limitsBody(entity, r.PathValue("id"), l), err
	}
}

// setLimits replaces the overrides with the body's object ({} removes them).
func (h *Handler) setLimits(entity keystore.Entity) endpoint {
	return func(ctx context.Context, r *http.Request) (int, any, error) {
		var l keystore.Limits
		if err := decode(r, &l, false); err != nil {
			return 0, nil, err
		}
		if err := h.vocabulary().CheckLimits(l); err != nil {
			return 0, nil, err
		}
		if err := h.Store.SetLimits(ctx, entity, r.PathValue("id"), l); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, limitsBody(entity, r.PathValue("id"), l), nil
	}
}

func limitsBody(entity keystore.Entity, id string, l keystore.Limits) map[string]any {
	if l == nil {
		l = keystore.Limits{}
	}
	return map[string]any{string(entity): id, "limits": l}
}
