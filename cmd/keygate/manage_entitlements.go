package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
)

// entFlags are the entitlement flags of keys create and keys update.
type entFlags struct {
	fs                  *flagSet
	scopes, cidrs, meta []string
	rate, burst, quota  int64
	uses                int64
	refill              string
	// update only
	unsetScopes, unsetCIDRs, unsetLimits, unsetUses bool
	unsetMeta                                       []string
}

func (f *entFlags) register(fs *flagSet, update bool) {
	f.fs = fs
	fs.StringArrayVar(&f.scopes, "scope", nil, "a scope like videos:read, videos:* or *:read (repeat; none: unrestricted)")
	fs.StringArrayVar(&f.cidrs, "allow-cidr", nil, "an IPv4 or IPv6 CIDR the key may be used from (repeat)")
	fs.StringArrayVar(&f.meta, "meta", nil, "NAME=VALUE passed upstream as x-keygate-meta-NAME (repeat)")
	fs.Int64Var(&f.rate, "rate", 0, "the key's own rate limit (requests per second), beating site, account and plan")
	fs.Int64Var(&f.burst, "burst", 0, "the key's own burst")
	fs.Int64Var(&f.quota, "quota", 0, "the key's own monthly quota")
	fs.Int64Var(&f.uses, "uses", 0, "number of uses (metered requests) the key has")
	fs.StringVar(&f.refill, "refill", "", "refill the uses each UTC day or month: daily:N or monthly:N (needs --uses, or uses already set)")
	if update {
		fs.Lookup("scope").Usage = "a scope (repeat): replaces the key's scopes"
		fs.Lookup("allow-cidr").Usage = "a CIDR (repeat): replaces the key's allowed CIDRs"
		fs.Lookup("meta").Usage = "NAME=VALUE (repeat): sets these entries, keeps the others"
		fs.BoolVar(&f.unsetScopes, "unset-scopes", false, "remove every scope (unrestricted)")
		fs.BoolVar(&f.unsetCIDRs, "unset-cidrs", false, "remove the CIDR allowlist")
		fs.StringArrayVar(&f.unsetMeta, "unset-meta", nil, "remove this meta entry (repeat)")
		fs.BoolVar(&f.unsetLimits, "unset-limits", false, "remove the key's own rate, burst and quota")
		fs.BoolVar(&f.unsetUses, "unset-uses", false, "make the key unmetered (and drop its refill)")
	}
}

func (f *entFlags) changed(name string) bool { return f.fs.Changed(name) }

func (f *entFlags) metaMap() (map[string]string, error) {
	if len(f.meta) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range f.meta {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%w: --meta %q: want NAME=VALUE", errUsage, kv)
		}
		m[k] = v
	}
	return m, nil
}

func (f *entFlags) limits() keystore.Limits {
	l := keystore.Limits{}
	for _, n := range []struct {
		name string
		v    int64
	}{{"rate", f.rate}, {"burst", f.burst}, {"quota", f.quota}} {
		if f.changed(n.name) {
			l[n.name] = n.v
		}
	}
	return l
}

func (f *entFlags) parseRefill() (*keystore.Refill, error) {
	if !f.changed("refill") {
		return nil, nil
	}
	interval, n, ok := strings.Cut(f.refill, ":")
	amount, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || (interval != keystore.RefillDaily && interval != keystore.RefillMonthly) || amount < 1 {
		return nil, fmt.Errorf("%w: --refill %q: want daily:N or monthly:N with N at least 1", errUsage, f.refill)
	}
	return &keystore.Refill{Interval: interval, Amount: amount}, nil
}

// entitlements are a new key's, validated (a usage error names the flag).
func (f *entFlags) entitlements() (keystore.Entitlements, error) {
	meta, err := f.metaMap()
	if err != nil {
		return keystore.Entitlements{}, err
	}
	refill, err := f.parseRefill()
	if err != nil {
		return keystore.Entitlements{}, err
	}
	e := keystore.Entitlements{Scopes: f.scopes, AllowedCIDRs: f.cidrs, Meta: meta, Limits: f.limits(), Refill: refill}
	if f.changed("uses") {
		u := f.uses
		e.Remaining = &u
	} else if refill != nil {
		return keystore.Entitlements{}, fmt.Errorf("%w: --refill needs --uses", errUsage)
	}
	return e, flagError(e.Validate())
}

// flagNames maps the field a store error names to the flag that sets it.
var flagNames = map[string]string{"scopes": "--scope", "allowed_cidrs": "--allow-cidr", "meta": "--meta",
	"limits": "--rate/--burst/--quota", "remaining": "--uses", "refill": "--refill"}

// flagError turns an invalid-entitlement error into a usage error (exit 2)
// that names the flag.
func flagError(err error) error {
	if err == nil || !errors.Is(err, keystore.ErrInvalid) {
		return err
	}
	msg := strings.ReplaceAll(err.Error(), "keystore: ", "")
	if _, rest, ok := strings.Cut(msg, "invalid: "); ok {
		msg = rest
	}
	for field, flag := range flagNames {
		if strings.HasPrefix(msg, field+":") {
			return fmt.Errorf("%w: %s: %s", errUsage, flag, msg)
		}
	}
	return fmt.Errorf("%w: %s", errUsage, msg)
}

// patch is what keys update changes.
func (f *entFlags) patch(name *string) (keystore.KeyPatch, error) {
	p := keystore.KeyPatch{Name: name, ClearLimits: f.unsetLimits, ClearRemaining: f.unsetUses}
	if f.unsetScopes && f.changed("scope") || f.unsetCIDRs && f.changed("allow-cidr") || f.unsetUses && (f.changed("uses") || f.changed("refill")) {
		return p, fmt.Errorf("%w: a flag and its --unset-… flag together", errUsage)
	}
	if f.changed("scope") || f.unsetScopes {
		s := append([]string{}, f.scopes...)
		p.Scopes = &s
	}
	if f.changed("allow-cidr") || f.unsetCIDRs {
		c := append([]string{}, f.cidrs...)
		p.AllowedCIDRs = &c
	}
	meta, err := f.metaMap()
	if err != nil {
		return p, err
	}
	if len(meta) > 0 || len(f.unsetMeta) > 0 {
		p.Meta = map[string]*string{}
		for _, k := range f.unsetMeta {
			p.Meta[k] = nil
		}
		for k, v := range meta {
			p.Meta[k] = &v
		}
	}
	if l := f.limits(); len(l) > 0 {
		p.Limits = map[string]*int64{}
		for k, v := range l {
			p.Limits[k] = &v
		}
	}
	if f.changed("uses") {
		u := f.uses
		p.Remaining = &u
	}
	if p.Refill, err = f.parseRefill(); err != nil {
		return p, err
	}
	if p.Empty() {
		return p, fmt.Errorf("%w: keys update: nothing to change (see keygate keys update --help)", errUsage)
	}
	return p, nil
}

func (e *environment) keyUpdate() *cobra.Command {
	var sf storeFlags
	var ef entFlags
	var name string
	var asJSON bool
	c, fs := e.newLeaf("update ID", "change a key's name, scopes, CIDRs, meta, limits or uses", exactArgs(1, "ID"), func(ctx context.Context, args []string) error {
		var n *string
		if fs := ef.fs; fs.Changed("name") {
			n = &name
		}
		p, err := ef.patch(n)
		if err != nil {
			return err
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			k, err := st.UpdateKey(ctx, args[0], p)
			if err != nil {
				if errors.Is(err, keystore.ErrInvalid) {
					return flagError(err)
				}
				return storeError(err, "key", args[0])
			}
			return e.output(asJSON, k, func(w io.Writer) { keyTable(w, k); entitlementLines(w, k) })
		})
	})
	c.Long = "Change a key; running servers see the change within the change-log bound. --scope and --allow-cidr replace the lists, --meta and --rate/--burst/--quota set single entries, the --unset-… flags remove."
	sf.register(fs)
	ef.register(fs, true)
	fs.StringVar(&name, "name", "", "new key name")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// rolledKey is the JSON of keys roll: the new key with its secret (shown
// once) and the old key's id and new expiry.
type rolledKey struct {
	keystore.Key
	Secret       string     `json:"key"`
	OldKeyID     string     `json:"old_key_id"`
	OldExpiresAt *time.Time `json:"old_expires_at"`
}

func (e *environment) keyRoll() *cobra.Command {
	var sf storeFlags
	var grace time.Duration
	var asJSON bool
	c, fs := e.newLeaf("roll ID", "replace one key with a new one; the old one works for --grace more", exactArgs(1, "ID"), func(ctx context.Context, args []string) error {
		if grace < 0 || grace > keystore.MaxGrace {
			return fmt.Errorf("%w: --grace %s: want 0 to %s", errUsage, grace, keystore.MaxGrace)
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			nu, secret, old, err := st.RollKey(ctx, args[0], grace)
			if err != nil {
				return storeError(err, "key", args[0])
			}
			if asJSON {
				return e.printJSON(rolledKey{Key: nu, Secret: secret.Reveal(), OldKeyID: old.ID, OldExpiresAt: old.ExpiresAt})
			}
			fmt.Fprintln(e.stdout, secret.Reveal())
			fmt.Fprintf(e.stderr, "key %s replaces %s, which expires at %s; the new key is shown only this once\n",
				nu.ID, old.ID, optTime(old.ExpiresAt))
			return nil
		})
	})
	c.Long = "Roll a key: a new key with the same site, mode, name, expiry and entitlements (remaining uses move to it). Plain output: the new key alone on stdout; --json: the new key object with \"key\", \"old_key_id\" and \"old_expires_at\". The old key answers API_KEY_EXPIRED after the grace."
	sf.register(fs)
	fs.DurationVar(&grace, "grace", 24*time.Hour, "how long the old key keeps working (0 to 720h)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// entitlementLines prints a key's entitlements below its table, one
// attribute a line; nothing for an unrestricted key.
func entitlementLines(w io.Writer, k keystore.Key) {
	if len(k.Scopes) > 0 {
		fmt.Fprintf(w, "scopes:\t%s\n", strings.Join(k.Scopes, " "))
	}
	if len(k.AllowedCIDRs) > 0 {
		fmt.Fprintf(w, "allowed cidrs:\t%s\n", strings.Join(k.AllowedCIDRs, " "))
	}
	if len(k.Meta) > 0 {
		fmt.Fprintf(w, "meta:\t%s\n", sortedPairs(k.Meta))
	}
	if len(k.Limits) > 0 {
		m := map[string]string{}
		for n, v := range k.Limits {
			m[n] = strconv.FormatInt(v, 10)
		}
		fmt.Fprintf(w, "limits:\t%s\n", sortedPairs(m))
	}
	if k.Remaining != nil {
		refill := ""
		if k.Refill != nil {
			refill = fmt.Sprintf(" (refill %s:%d)", k.Refill.Interval, k.Refill.Amount)
		}
		fmt.Fprintf(w, "remaining:\t%d%s\n", *k.Remaining, refill)
	}
}

func sortedPairs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, " ")
}

// scopesCell is the SCOPES column of keys list: "*" for an unrestricted key.
func scopesCell(k keystore.Key) string {
	if len(k.Scopes) == 0 {
		return "*"
	}
	return strings.Join(k.Scopes, ",")
}

// remainingCell is the REMAINING column: "-" for an unmetered key.
func remainingCell(k keystore.Key) string {
	if k.Remaining == nil {
		return "-"
	}
	return strconv.FormatInt(*k.Remaining, 10)
}
