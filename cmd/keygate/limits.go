package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// usage prints a site's monthly quota usage from the store (the same
// answer as GET /admin/v1/sites/{id}/usage).
func (e environment) usage(ctx context.Context, args []string) (err error) {
	fs := e.flags("usage")
	var sf storeFlags
	sf.register(fs)
	site := fs.String("site", "", "site id")
	month := fs.String("month", "", "calendar month YYYY-MM (default: the current month, UTC)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := fs.parse(args); err != nil {
		return err
	}
	if *site == "" {
		return fmt.Errorf("%w: usage: --site is required", errUsage)
	}
	at := time.Now()
	if *month != "" {
		if at, err = time.Parse("2006-01", *month); err != nil {
			return fmt.Errorf("%w: usage: --month: want YYYY-MM", errUsage)
		}
	}
	st, err := e.openStore(ctx, sf)
	if err != nil {
		return err
	}
	defer closeInto(&err, st)
	u, err := admin.ReadSiteUsage(ctx, st, nil, *site, at)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(u)
	}
	fmt.Fprintf(e.stdout, "site %s, %s (resets %s)\n", u.Site, u.Period, u.ResetsAt.Format(time.RFC3339))
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODE\tUSED\tQUOTA\tREMAINING")
	for _, m := range u.Usage {
		quota, remaining := "-", "-"
		if m.Quota > 0 {
			quota, remaining = strconv.FormatInt(m.Quota, 10), strconv.FormatInt(m.Remaining, 10)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", m.Mode, m.Used, quota, remaining)
	}
	return tw.Flush()
}

// limitsCmd sets or shows a site's or an account's limit overrides.
func (e environment) limitsCmd(ctx context.Context, args []string) (err error) {
	sub, args, err := subcommand(args, "limits", "set", "show")
	if err != nil {
		return err
	}
	fs := e.flags("limits " + sub)
	var sf storeFlags
	sf.register(fs)
	site := fs.String("site", "", "site id")
	account := fs.String("account", "", "account id")
	var values stringList
	fs.Var(&values, "set", `set: override NAME=N (repeatable), e.g. --set rate=600 --set quota=50000; 0 means unlimited`)
	clearAll := fs.Bool("clear", false, "set: remove every override")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := fs.parse(args); err != nil {
		return err
	}
	entity, id := keystore.EntitySite, *site
	switch {
	case (*site == "") == (*account == ""):
		return fmt.Errorf("%w: limits %s: give exactly one of --site and --account", errUsage, sub)
	case *account != "":
		entity, id = keystore.EntityAccount, *account
	}
	st, err := e.openStore(ctx, sf)
	if err != nil {
		return err
	}
	defer closeInto(&err, st)
	if sub == "set" {
		l, err := parseOverrides(values.values, *clearAll)
		if err != nil {
			return err
		}
		if err := st.SetLimits(ctx, entity, id, l); err != nil {
			return err
		}
	}
	l, err := st.LimitsOf(ctx, entity, id)
	if err != nil {
		return err
	}
	if *asJSON {
		if l == nil {
			l = keystore.Limits{}
		}
		return e.printJSON(map[string]any{string(entity): id, "limits": l})
	}
	fmt.Fprintf(e.stdout, "%s %s: limits %v\n", entity, id, map[string]int64(l))
	return nil
}

// parseOverrides reads NAME=N pairs; --clear (alone) removes them all.
func parseOverrides(pairs []string, clearAll bool) (keystore.Limits, error) {
	if clearAll != (len(pairs) == 0) {
		return nil, fmt.Errorf("%w: limits set: give --set NAME=N pairs or --clear", errUsage)
	}
	l := keystore.Limits{}
	for _, p := range pairs {
		name, v, ok := strings.Cut(p, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("%w: limits set: --set %q: want NAME=N", errUsage, p)
		}
		l[name] = n
	}
	return l, l.Validate()
}
