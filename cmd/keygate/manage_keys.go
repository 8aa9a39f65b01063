package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
)

// createdKey is the JSON of a key at creation: the only time "key" appears.
type createdKey struct {
	keystore.Key
	Secret  string   `json:"key"`
	Revoked []string `json:"revoked,omitempty"`
}

func (e *environment) keysCommand() *cobra.Command {
	return e.newGroup("keys", "create, list, show, update, roll, revoke and import keys",
		e.keyCreate(), e.keysList(), e.keyShow(), e.keyUpdate(), e.keyRoll(), e.keyRevoke(), e.keyImport())
}

// keyFlags are the flags of a new key (create, import).
type keyFlags struct {
	site, mode, name, expires string
	asJSON                    bool
	ent                       entFlags
}

func (k *keyFlags) register(fs *flagSet) {
	fs.StringVar(&k.site, "site", "", "site id")
	fs.StringVar(&k.mode, "mode", "", "live or test")
	fs.StringVar(&k.name, "name", "", "key name")
	fs.StringVar(&k.expires, "expires-at", "", "RFC 3339 expiry time, e.g. 2030-01-02T15:04:05Z")
	fs.BoolVar(&k.asJSON, "json", false, "print JSON")
	k.ent.register(fs, false)
}

func (k *keyFlags) spec() (keystore.KeySpec, error) {
	if k.site == "" {
		return keystore.KeySpec{}, fmt.Errorf("%w: --site is required", errUsage)
	}
	m, err := keystore.ParseMode(k.mode)
	if err != nil {
		return keystore.KeySpec{}, fmt.Errorf("%w: --mode %q: want live or test", errUsage, k.mode)
	}
	spec := keystore.KeySpec{SiteID: k.site, Mode: m, Name: k.name}
	if k.expires != "" {
		t, err := time.Parse(time.RFC3339, k.expires)
		if err != nil {
			return keystore.KeySpec{}, fmt.Errorf("%w: --expires-at %q: want RFC 3339, e.g. 2030-01-02T15:04:05Z", errUsage, k.expires)
		}
		spec.ExpiresAt = &t
	}
	spec.Entitlements, err = k.ent.entitlements()
	return spec, err
}

func (e *environment) keyCreate() *cobra.Command {
	var sf storeFlags
	var kf keyFlags
	c, fs := e.newLeaf("create", "create a key for a site (printed once)", e.noArgs, func(ctx context.Context, _ []string) error {
		spec, err := kf.spec()
		if err != nil {
			return err
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			key, secret, err := st.CreateKey(ctx, spec)
			if err != nil {
				return storeError(err, "site", spec.SiteID)
			}
			if kf.asJSON {
				return e.printJSON(createdKey{Key: key, Secret: secret.Reveal()})
			}
			fmt.Fprintln(e.stdout, secret.Reveal())
			fmt.Fprintf(e.stderr, "key %s (%s) for site %s; it is shown only this once\n", key.ID, key.Mode, key.SiteID)
			return nil
		})
	})
	c.Long = "Create a key. Plain output: the key alone on the first line of stdout; --json: the created object with \"id\" and \"key\". The key is never shown again."
	sf.register(fs)
	kf.register(fs)
	return c
}

func keyTable(w io.Writer, keys ...keystore.Key) {
	fmt.Fprintln(w, "ID\tNAME\tPREFIX\tMODE\tSITE\tCREATED\tLAST USED\tEXPIRES\tREVOKED\tSCOPES\tREMAINING")
	for _, k := range keys {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.Mode, k.SiteID,
			k.CreatedAt.Format(time.RFC3339), optTime(k.LastUsedAt), optTime(k.ExpiresAt), optTime(k.RevokedAt), scopesCell(k), remainingCell(k))
	}
}

func optTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func (e *environment) keysList() *cobra.Command {
	var sf storeFlags
	var lf listFlags
	var site string
	c, fs := e.newLeaf("list", "list a site's keys (never the secrets)", e.noArgs, func(ctx context.Context, _ []string) error {
		if site == "" {
			return fmt.Errorf("%w: keys list: --site is required", errUsage)
		}
		if err := lf.validate(); err != nil {
			return err
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			keys, err := st.Keys(ctx, site, lf.after, lf.limit)
			if err != nil {
				return storeError(err, "site", site)
			}
			if keys == nil {
				keys = []keystore.Key{}
			}
			return e.output(lf.asJSON, page("keys", keys, lf.limit, func(k keystore.Key) string { return k.ID }),
				func(w io.Writer) { keyTable(w, keys...) })
		})
	})
	sf.register(fs)
	lf.register(fs, "keys")
	lf.limit = 1000
	fs.Lookup("limit").DefValue = "1000"
	fs.StringVar(&site, "site", "", "site id")
	return c
}

func (e *environment) keyShow() *cobra.Command {
	return idCommand(e, "show ID", "show one key (never the secret)", "key", (*keystore.Store).Key,
		func(w io.Writer, k keystore.Key) { keyTable(w, k); entitlementLines(w, k) })
}

func (e *environment) keyRevoke() *cobra.Command {
	return idCommand(e, "revoke ID", "revoke a key now, on every replica", "key", (*keystore.Store).RevokeKey,
		func(w io.Writer, k keystore.Key) {
			fmt.Fprintf(w, "revoked key %s at %s\n", k.ID, k.RevokedAt.Format(time.RFC3339))
		})
}
