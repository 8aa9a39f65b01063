package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

func (e *environment) usageCommand() *cobra.Command {
	var sf storeFlags
	var pf policyFlag
	var site, month string
	var asJSON bool
	c, fs := e.newLeaf("usage", "a site's monthly quota usage (used, quota, remaining)", e.noArgs, func(ctx context.Context, _ []string) error {
		if site == "" {
			return fmt.Errorf("%w: usage: --site is required", errUsage)
		}
		at := time.Now()
		if month != "" {
			var err error
			if at, err = time.Parse("2006-01", month); err != nil {
				return fmt.Errorf("%w: usage: --month %q: want YYYY-MM", errUsage, month)
			}
		}
		pol, err := loadPolicy(ctx, pf.dir)
		if err != nil {
			return err
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			u, err := admin.ReadSiteUsage(ctx, st, pol, site, at)
			if err != nil {
				return storeError(err, "site", site)
			}
			if err := admin.EffectiveQuota(ctx, st, pol, &u); err != nil {
				return err
			}
			return e.output(asJSON, u, func(w io.Writer) {
				fmt.Fprintf(w, "site %s, %s (resets %s)\n", u.Site, u.Period, u.ResetsAt.Format(time.RFC3339))
				fmt.Fprintln(w, "MODE\tUSED\tQUOTA\tREMAINING")
				for _, m := range u.Usage {
					quota, remaining := "-", "-"
					if m.Quota > 0 {
						quota, remaining = strconv.FormatInt(m.Quota, 10), strconv.FormatInt(m.Remaining, 10)
					}
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", m.Mode, m.Used, quota, remaining)
				}
			})
		})
	})
	sf.register(fs)
	pf.register(fs)
	fs.StringVar(&site, "site", "", "site id")
	fs.StringVar(&month, "month", "", "calendar month YYYY-MM (default: the current month, UTC)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func (e *environment) limitsCommand() *cobra.Command {
	return e.newGroup("limits", "per-site / per-account limit overrides", e.limitsSet(), e.limitsShow())
}

// limitsTarget is --site or --account (exactly one).
type limitsTarget struct{ site, account string }

func (t *limitsTarget) register(fs *flagSet) {
	fs.StringVar(&t.site, "site", "", "site id")
	fs.StringVar(&t.account, "account", "", "account id")
}

func (t *limitsTarget) entity(sub string) (keystore.Entity, string, error) {
	switch {
	case (t.site == "") == (t.account == ""):
		return "", "", fmt.Errorf("%w: limits %s: give exactly one of --site and --account", errUsage, sub)
	case t.account != "":
		return keystore.EntityAccount, t.account, nil
	}
	return keystore.EntitySite, t.site, nil
}

func (e *environment) limitsSet() *cobra.Command {
	var sf storeFlags
	var pf policyFlag
	var target limitsTarget
	var set, unset stringList
	var clearAll, asJSON bool
	c, fs := e.newLeaf("set", "set or remove limit overrides (merged with the ones already set)", e.noArgs, func(ctx context.Context, _ []string) error {
		entity, id, err := target.entity("set")
		if err != nil {
			return err
		}
		changes, err := parseOverrides(set.values)
		if err != nil {
			return err
		}
		if clearAll == (len(changes)+len(unset.values) > 0) {
			return fmt.Errorf("%w: limits set: give --set NAME=N and/or --unset NAME, or --clear alone", errUsage)
		}
		if err := pf.check(ctx, "--set", func(v admin.Vocabulary) error { return v.CheckLimits(changes) }); err != nil {
			return err
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			l, err := st.LimitsOf(ctx, entity, id)
			if err != nil {
				return storeError(err, string(entity), id)
			}
			l = mergeLimits(l, changes, unset.values, clearAll)
			if err := st.SetLimits(ctx, entity, id, l); err != nil {
				return storeError(err, string(entity), id)
			}
			return e.printLimits(entity, id, l, asJSON)
		})
	})
	c.Long = `Set limit overrides of a site or an account. --set adds or changes one name
and keeps the others; --unset removes one; --clear removes them all. 0 means
unlimited. Names are checked against the policy's (built-in: rate, burst,
quota).`
	c.Example = "  keygate limits set --site acme-web --set rate=600 --set quota=50000\n  keygate limits set --site acme-web --unset rate"
	sf.register(fs)
	pf.register(fs)
	target.register(fs)
	fs.Var(&set, "set", "override NAME=N (repeatable), e.g. --set rate=600; 0 means unlimited")
	fs.Var(&unset, "unset", "remove the override NAME (repeatable)")
	fs.BoolVar(&clearAll, "clear", false, "remove every override")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func (e *environment) limitsShow() *cobra.Command {
	var sf storeFlags
	var target limitsTarget
	var asJSON bool
	c, fs := e.newLeaf("show", "show the limit overrides of a site or an account", e.noArgs, func(ctx context.Context, _ []string) error {
		entity, id, err := target.entity("show")
		if err != nil {
			return err
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			l, err := st.LimitsOf(ctx, entity, id)
			if err != nil {
				return storeError(err, string(entity), id)
			}
			return e.printLimits(entity, id, l, asJSON)
		})
	})
	sf.register(fs)
	target.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func (e *environment) printLimits(entity keystore.Entity, id string, l keystore.Limits, asJSON bool) error {
	if l == nil {
		l = keystore.Limits{}
	}
	return e.output(asJSON, map[string]any{string(entity): id, "limits": l}, func(w io.Writer) {
		fmt.Fprintf(w, "%s %s\n", entity, id)
		fmt.Fprintln(w, "LIMIT\tVALUE")
		names := slices.Sorted(maps.Keys(l))
		if len(names) == 0 {
			fmt.Fprintln(w, "(none: the plan's limits apply)\t")
		}
		for _, name := range names {
			value := strconv.FormatInt(l[name], 10)
			if l[name] == 0 {
				value = "0 (unlimited)"
			}
			fmt.Fprintf(w, "%s\t%s\n", name, value)
		}
	})
}

// parseOverrides reads NAME=N pairs.
func parseOverrides(pairs []string) (keystore.Limits, error) {
	l := keystore.Limits{}
	for _, p := range pairs {
		name, v, ok := strings.Cut(p, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("%w: limits set: --set %q: want NAME=N, e.g. rate=600", errUsage, p)
		}
		l[name] = n
	}
	return l, nil
}

// mergeLimits applies --set and --unset to the overrides already stored.
func mergeLimits(cur, set keystore.Limits, unset []string, clearAll bool) keystore.Limits {
	out := keystore.Limits{}
	if !clearAll {
		maps.Copy(out, cur)
	}
	for _, k := range unset {
		delete(out, k)
	}
	maps.Copy(out, set)
	return out
}
