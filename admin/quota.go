package admin

import (
	"context"
	"encoding/json"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// EffectiveQuota fills in the quota of counters that were never charged
// this month, so that usage before the first metered request shows the
// quota in force (the plan's, overridden by the account's, overridden by
// the site's, as the policy data describes) instead of 0. A counter that
// was charged keeps the quota recorded with its last charge.
func EffectiveQuota(ctx context.Context, st *keystore.Store, p *policies.Policy, u *SiteUsage) error {
	facts, err := st.LookupSite(ctx, u.Site)
	if err != nil {
		return err
	}
	accountLimits, err := st.LimitsOf(ctx, keystore.EntityAccount, facts.Account.ID)
	if err != nil {
		return err
	}
	siteLimits, err := st.LimitsOf(ctx, keystore.EntitySite, u.Site)
	if err != nil {
		return err
	}
	quota, ok := planQuota(p, facts.Account.Plan)
	if v, set := accountLimits["quota"]; set {
		quota, ok = v, true
	}
	if v, set := siteLimits["quota"]; set {
		quota, ok = v, true
	}
	if !ok || quota <= 0 {
		return nil // unlimited, or a policy without quotas
	}
	for i := range u.Usage {
		m := &u.Usage[i]
		if m.Quota == 0 {
			m.Quota, m.Remaining = quota, max(quota-m.Used, 0)
		}
	}
	return nil
}

// planQuota reads data.keygate.config.limits.plans[plan].quota.
func planQuota(p *policies.Policy, plan string) (int64, bool) {
	if p == nil || p.Bundle == nil {
		return 0, false
	}
	config := object(object(p.Bundle.Documents["keygate"])["config"])
	switch q := object(object(object(config["limits"])["plans"])[plan])["quota"].(type) {
	case json.Number:
		n, err := q.Int64()
		return n, err == nil
	case int:
		return int64(q), true
	case int64:
		return q, true
	case float64:
		return int64(q), true
	}
	return 0, false
}
