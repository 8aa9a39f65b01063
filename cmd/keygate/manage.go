package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/keystore"
)

// stringList is a repeatable string flag (--domain a --domain b).
type stringList struct {
	values []string
	set    bool
}

func (l *stringList) String() string { return strings.Join(l.values, ",") }

func (l *stringList) Set(v string) error {
	l.values, l.set = append(l.values, v), true
	return nil
}

func (e environment) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func subcommand(args []string, group string, names ...string) (string, []string, error) {
	if len(args) == 0 {
		return "", nil, fmt.Errorf("%w: keygate %s %s", errUsage, group, strings.Join(names, "|"))
	}
	for _, n := range names {
		if args[0] == n {
			return n, args[1:], nil
		}
	}
	return "", nil, fmt.Errorf("%w: keygate %s: unknown subcommand %q (want %s)", errUsage, group, args[0], strings.Join(names, ", "))
}

func (e environment) accounts(ctx context.Context, args []string) (err error) {
	sub, args, err := subcommand(args, "accounts", "create", "update")
	if err != nil {
		return err
	}
	fs := e.flags("accounts " + sub)
	var sf storeFlags
	sf.register(fs)
	id := fs.String("id", "", "account id")
	plan := fs.String("plan", "", "plan (free, starter, plus, pro, max, enterprise, or your own)")
	status := fs.String("status", "", "active, trialing, trial_expired or inactive")
	asJSON := fs.Bool("json", false, "print the account as JSON")
	if _, err := fs.parse(args); err != nil {
		return err
	}
	if *id == "" {
		return fmt.Errorf("%w: accounts %s: --id is required", errUsage, sub)
	}
	st, err := e.openStore(ctx, sf)
	if err != nil {
		return err
	}
	defer closeInto(&err, st)
	var a keystore.Account
	switch sub {
	case "create":
		if *plan == "" {
			return fmt.Errorf("%w: accounts create: --plan is required", errUsage)
		}
		a, err = st.CreateAccount(ctx, keystore.Account{ID: *id, Plan: *plan, Status: keystore.AccountStatus(*status)})
	case "update":
		var u keystore.AccountUpdate
		if *plan != "" {
			u.Plan = plan
		}
		if *status != "" {
			s := keystore.AccountStatus(*status)
			u.Status = &s
		}
		a, err = st.UpdateAccount(ctx, *id, u)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(a)
	}
	fmt.Fprintf(e.stdout, "account %s: plan %s, status %s\n", a.ID, a.Plan, a.Status)
	return nil
}

func (e environment) sites(ctx context.Context, args []string) (err error) {
	sub, args, err := subcommand(args, "sites", "create", "update", "rotate-key")
	if err != nil {
		return err
	}
	fs := e.flags("sites " + sub)
	var sf storeFlags
	sf.register(fs)
	id := fs.String("id", "", "site id")
	account := fs.String("account", "", "owning account id (create)")
	var domains stringList
	fs.Var(&domains, "domain", "allowed browser domain for public routes (repeatable; example.com or *.example.com)")
	inactive := fs.Bool("inactive", false, "create the site inactive")
	active := fs.String("active", "", "update: true or false")
	mode := fs.String("mode", "live", "rotate-key: mode of the new key")
	name := fs.String("name", "", "rotate-key: name of the new key")
	grace := fs.Duration("grace", 0, "rotate-key: old keys keep working this long (e.g. 24h)")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := fs.parse(args); err != nil {
		return err
	}
	if *id == "" {
		return fmt.Errorf("%w: sites %s: --id is required", errUsage, sub)
	}
	st, err := e.openStore(ctx, sf)
	if err != nil {
		return err
	}
	defer closeInto(&err, st)
	switch sub {
	case "create":
		if *account == "" {
			return fmt.Errorf("%w: sites create: --account is required", errUsage)
		}
		s, err := st.CreateSite(ctx, keystore.Site{ID: *id, AccountID: *account, Domains: domains.values, Active: !*inactive})
		if err != nil {
			return err
		}
		return e.printSite(s, *asJSON)
	case "update":
		var u keystore.SiteUpdate
		if domains.set {
			u.Domains = &domains.values
		}
		if *active != "" {
			b, err := parseBool(*active)
			if err != nil {
				return fmt.Errorf("%w: sites update: --active: %v", errUsage, err)
			}
			u.Active = &b
		}
		s, err := st.UpdateSite(ctx, *id, u)
		if err != nil {
			return err
		}
		return e.printSite(s, *asJSON)
	}
	m, err := keystore.ParseMode(*mode)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	key, secret, revoked, err := st.RotateSiteKeyGrace(ctx, keystore.KeySpec{SiteID: *id, Mode: m, Name: *name}, *grace)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(createdKey{Key: key, Secret: secret.Reveal(), Revoked: revoked})
	}
	fmt.Fprintln(e.stdout, secret.Reveal())
	fmt.Fprintf(e.stderr, "new key %s for site %s (shown once); revoked %d key(s)\n", key.ID, key.SiteID, len(revoked))
	return nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no":
		return false, nil
	}
	return false, fmt.Errorf("%q: want true or false", s)
}

func (e environment) printSite(s keystore.Site, asJSON bool) error {
	if asJSON {
		return e.printJSON(s)
	}
	fmt.Fprintf(e.stdout, "site %s: account %s, active %t, domains [%s]\n", s.ID, s.AccountID, s.Active, strings.Join(s.Domains, " "))
	return nil
}

// createdKey is the JSON of a key at creation: the only time "key" appears.
type createdKey struct {
	keystore.Key
	Secret  string   `json:"key"`
	Revoked []string `json:"revoked,omitempty"`
}

func (e environment) keys(ctx context.Context, args []string) (err error) {
	sub, args, err := subcommand(args, "keys", "create", "list", "revoke", "import")
	if err != nil {
		return err
	}
	fs := e.flags("keys " + sub)
	var sf storeFlags
	sf.register(fs)
	site := fs.String("site", "", "site id")
	mode := fs.String("mode", "", "live or test (create)")
	name := fs.String("name", "", "key name (create)")
	expires := fs.String("expires-at", "", "RFC 3339 expiry time (create, import)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	st, err := e.openStore(ctx, sf)
	if err != nil {
		return err
	}
	defer closeInto(&err, st)
	switch sub {
	case "create":
		spec, err := keySpec(*site, *mode, *name, *expires)
		if err != nil {
			return err
		}
		key, secret, err := st.CreateKey(ctx, spec)
		if err != nil {
			return err
		}
		if *asJSON {
			return e.printJSON(createdKey{Key: key, Secret: secret.Reveal()})
		}
		fmt.Fprintln(e.stdout, secret.Reveal())
		fmt.Fprintf(e.stderr, "key %s (%s) for site %s; it is shown only this once\n", key.ID, key.Mode, key.SiteID)
		return nil
	case "list":
		if *site == "" {
			return fmt.Errorf("%w: keys list: --site is required", errUsage)
		}
		keys, err := st.Keys(ctx, *site, "", 1000)
		if err != nil {
			return err
		}
		if *asJSON {
			if keys == nil {
				keys = []keystore.Key{}
			}
			return e.printJSON(map[string]any{"keys": keys})
		}
		return e.printKeys(keys)
	case "import":
		return e.importKey(ctx, st, *site, *mode, *name, *expires, *asJSON)
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: keys revoke ID", errUsage)
	}
	key, err := st.RevokeKey(ctx, pos[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(key)
	}
	fmt.Fprintf(e.stdout, "revoked key %s at %s\n", key.ID, key.RevokedAt.Format(time.RFC3339))
	return nil
}

func keySpec(site, mode, name, expires string) (keystore.KeySpec, error) {
	if site == "" {
		return keystore.KeySpec{}, fmt.Errorf("%w: --site is required", errUsage)
	}
	m, err := keystore.ParseMode(mode)
	if err != nil {
		return keystore.KeySpec{}, fmt.Errorf("%w: --mode: %v", errUsage, err)
	}
	spec := keystore.KeySpec{SiteID: site, Mode: m, Name: name}
	if expires != "" {
		t, err := time.Parse(time.RFC3339, expires)
		if err != nil {
			return keystore.KeySpec{}, fmt.Errorf("%w: --expires-at: want RFC 3339, e.g. 2030-01-02T15:04:05Z", errUsage)
		}
		spec.ExpiresAt = &t
	}
	return spec, nil
}

func (e environment) printKeys(keys []keystore.Key) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tMODE\tSITE\tCREATED\tLAST USED\tEXPIRES\tREVOKED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.Mode, k.SiteID,
			k.CreatedAt.Format(time.RFC3339), optTime(k.LastUsedAt), optTime(k.ExpiresAt), optTime(k.RevokedAt))
	}
	return tw.Flush()
}

func optTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}
