package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

func (e *environment) sitesCommand() *cobra.Command {
	return e.newGroup("sites", "create, update, list, show sites and rotate their keys",
		e.siteCreate(), e.siteUpdate(), e.sitesList(), e.siteShow(), e.siteRotate())
}

func siteTable(w io.Writer, sites ...keystore.Site) {
	fmt.Fprintln(w, "ID\tACCOUNT\tACTIVE\tDOMAINS\tCREATED")
	for _, s := range sites {
		domains := strings.Join(s.Domains, " ")
		if domains == "" {
			domains = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%t\t%s\t%s\n", s.ID, s.AccountID, s.Active, domains, s.CreatedAt.Format(time.RFC3339))
	}
}

func (e *environment) siteCreate() *cobra.Command {
	var sf storeFlags
	var id, account string
	var domains stringList
	var inactive, asJSON bool
	c, fs := e.newLeaf("create", "create a site of an account", e.noArgs, func(ctx context.Context, _ []string) error {
		if id == "" || account == "" {
			return fmt.Errorf("%w: sites create: --id and --account are required", errUsage)
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			s, err := st.CreateSite(ctx, keystore.Site{ID: id, AccountID: account, Domains: domains.values, Active: !inactive})
			if err != nil {
				return storeError(err, "site", id)
			}
			return e.output(asJSON, s, func(w io.Writer) { siteTable(w, s) })
		})
	})
	sf.register(fs)
	fs.StringVar(&id, "id", "", "site id")
	fs.StringVar(&account, "account", "", "owning account id")
	fs.Var(&domains, "domain", "allowed browser domain for public routes (repeatable; example.com or *.example.com)")
	fs.BoolVar(&inactive, "inactive", false, "create the site inactive")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func (e *environment) siteUpdate() *cobra.Command {
	var sf storeFlags
	var id, active string
	var domains stringList
	var asJSON bool
	c, fs := e.newLeaf("update", "change a site's domains or whether it is active", e.noArgs, func(ctx context.Context, _ []string) error {
		if id == "" {
			return fmt.Errorf("%w: sites update: --id is required", errUsage)
		}
		var u keystore.SiteUpdate
		if domains.set {
			u.Domains = &domains.values
		}
		if active != "" {
			b, err := parseBool(active)
			if err != nil {
				return fmt.Errorf("%w: sites update: --active: %v", errUsage, err)
			}
			u.Active = &b
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			s, err := st.UpdateSite(ctx, id, u)
			if err != nil {
				return storeError(err, "site", id)
			}
			return e.output(asJSON, s, func(w io.Writer) { siteTable(w, s) })
		})
	})
	sf.register(fs)
	fs.StringVar(&id, "id", "", "site id")
	fs.Var(&domains, "domain", "allowed browser domain (repeatable; replaces the list)")
	fs.StringVar(&active, "active", "", "true or false")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return c
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

func (e *environment) sitesList() *cobra.Command {
	var account string
	return listing[keystore.Site]{plural: "sites", short: "list sites (of one account with --account)",
		read: func(ctx context.Context, st *keystore.Store, after string, limit int) ([]keystore.Site, error) {
			list, err := st.Sites(ctx, account, after, limit)
			if err != nil {
				return nil, storeError(err, "account", account)
			}
			return list, nil
		},
		id: func(s keystore.Site) string { return s.ID }, table: siteTable,
		flags: func(fs *flagSet) { fs.StringVar(&account, "account", "", "only this account's sites") }}.command(e)
}

func (e *environment) siteShow() *cobra.Command {
	return showCommand(e, "site", (*keystore.Store).Site, siteTable)
}

func (e *environment) siteRotate() *cobra.Command {
	var sf storeFlags
	var id, mode, name string
	var grace time.Duration
	var asJSON bool
	c, fs := e.newLeaf("rotate-key", "revoke a site's keys of one mode (or all) and create a new key", e.noArgs, func(ctx context.Context, _ []string) error {
		if id == "" {
			return fmt.Errorf("%w: sites rotate-key: --id is required", errUsage)
		}
		spec, revoke, err := admin.Rotation(id, mode, name)
		if err != nil {
			return usageOf(err, "sites rotate-key: --mode")
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			key, secret, revoked, err := st.RotateSiteKeys(ctx, spec, revoke, grace)
			if err != nil {
				return storeError(err, "site", id)
			}
			if asJSON {
				return e.printJSON(createdKey{Key: key, Secret: secret.Reveal(), Revoked: revoked})
			}
			fmt.Fprintln(e.stdout, secret.Reveal())
			fmt.Fprintf(e.stderr, "new %s key %s for site %s (shown once); %s\n", key.Mode, key.ID, key.SiteID, revokedSummary(mode, revoked, grace))
			return nil
		})
	})
	c.Long = `Revoke the site's active keys of --mode (live, test, or all) and create one
new key in the same transaction. With --mode all the new key is live. The new
key is printed once on stdout; what was revoked is said on stderr (or under
"revoked" with --json).`
	sf.register(fs)
	fs.StringVar(&id, "id", "", "site id")
	fs.StringVar(&mode, "mode", "live", "keys to rotate: live, test or all")
	fs.StringVar(&name, "name", "", "name of the new key")
	fs.DurationVar(&grace, "grace", 0, "old keys keep working this long (e.g. 24h)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func revokedSummary(mode string, revoked []string, grace time.Duration) string {
	what := mode + " key(s)"
	if mode == admin.RotateAll {
		what = "key(s) of every mode"
	}
	when := "revoked now"
	if grace > 0 {
		when = "revoked in " + grace.String()
	}
	if len(revoked) == 0 {
		return "no active " + what + " to revoke"
	}
	return fmt.Sprintf("%d %s %s: %s", len(revoked), what, when, strings.Join(revoked, ", "))
}
