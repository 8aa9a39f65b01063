package keystore

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Bounds on entitlements: they are policy input on every decision and
// travel upstream as headers.
const (
	MaxScopes      = 32
	MaxCIDRs       = 32
	MaxMeta        = 16
	maxMetaName    = 32
	maxMetaValue   = 256
	maxScopePart   = 32
	MaxRemaining   = maxLimitValue
	RefillDaily    = "daily"
	RefillMonthly  = "monthly"
	maxCIDRTextLen = 64
)

// Validate reports the first invalid entitlement, naming its field; it
// wraps ErrInvalid. It does not change e (Normalize does).
func (e Entitlements) Validate() error {
	c := e.clone()
	return c.Normalize()
}

// Normalize validates e and puts it in its stored form: scopes sorted
// without duplicates, CIDRs parsed, masked and sorted, empty collections
// nil.
func (e *Entitlements) Normalize() error {
	scopes, err := normalizeScopes(e.Scopes)
	if err != nil {
		return err
	}
	cidrs, err := normalizeCIDRs(e.AllowedCIDRs)
	if err != nil {
		return err
	}
	if err := validateMeta(e.Meta); err != nil {
		return err
	}
	if err := e.Limits.Validate(); err != nil {
		return fmt.Errorf("%w: limits: %s", ErrInvalid, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
	}
	if err := validateUses(e.Remaining, e.Refill); err != nil {
		return err
	}
	e.Scopes, e.AllowedCIDRs = scopes, cidrs
	if len(e.Meta) == 0 {
		e.Meta = nil
	}
	if len(e.Limits) == 0 {
		e.Limits = nil
	}
	return nil
}

func (e Entitlements) clone() Entitlements {
	c := e
	c.Scopes = slices.Clone(e.Scopes)
	c.AllowedCIDRs = slices.Clone(e.AllowedCIDRs)
	c.Meta = maps.Clone(e.Meta)
	c.Limits = maps.Clone(e.Limits)
	c.Remaining = clonePtr(e.Remaining)
	c.Refill = clonePtr(e.Refill)
	return c
}

// clonePtr is a pointer to a copy of *p, nil for nil.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// ValidScope accepts "<resource>:<action>": a resource of 1 to 32 of a-z,
// 0-9, '_', '.', '-' or the wildcard "*" (any resource), and an action of
// 1 to 32 of the same characters and '*' ("videos:*" is any action on
// videos, "*:read" reading anything).
func ValidScope(s string) error {
	if s == "*" {
		return nil // every scope, as the built-in policy reads it
	}
	res, act, ok := strings.Cut(s, ":")
	if !ok || res == "" || act == "" || len(res) > maxScopePart || len(act) > maxScopePart {
		return fmt.Errorf("%w: scopes: %q: want <resource>:<action>, each 1 to 32 characters", ErrInvalid, printable(s))
	}
	if res != "*" && !scopeChars(res, false) {
		return fmt.Errorf("%w: scopes: %q: resource takes a-z, 0-9, '_', '.', '-' (or is \"*\")", ErrInvalid, printable(s))
	}
	if !scopeChars(act, true) {
		return fmt.Errorf("%w: scopes: %q: action takes a-z, 0-9, '_', '.', '-' and '*'", ErrInvalid, printable(s))
	}
	return nil
}

func scopeChars(s string, star bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || star && c == '*'
		if !ok {
			return false
		}
	}
	return true
}

// printable bounds and sanitizes input echoed in an error message.
func printable(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}

func normalizeScopes(in []string) ([]string, error) {
	return sortedSet("scopes", in, MaxScopes, func(s string) (string, error) { return s, ValidScope(s) })
}

// sortedSet is a list entitlement's stored form: at most limit items, each
// as canon spells it, sorted without duplicates, nil when empty.
func sortedSet(field string, in []string, limit int, canon func(string) (string, error)) ([]string, error) {
	if len(in) > limit {
		return nil, fmt.Errorf("%w: %s: at most %d", ErrInvalid, field, limit)
	}
	var out []string
	for _, s := range in {
		c, err := canon(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// ParseCIDR parses an IPv4 or IPv6 prefix ("10.0.0.0/8", "2001:db8::/32";
// a bare address is a /32 or /128) and returns it masked.
func ParseCIDR(s string) (netip.Prefix, error) {
	if len(s) > maxCIDRTextLen {
		return netip.Prefix{}, fmt.Errorf("%w: allowed_cidrs: %q: too long", ErrInvalid, printable(s))
	}
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(s); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: allowed_cidrs: %q: want an IPv4 or IPv6 CIDR like 10.0.0.0/8", ErrInvalid, printable(s))
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%w: allowed_cidrs: %q: no zones", ErrInvalid, printable(s))
	}
	if p.Addr().Is4In6() {
		// Keep IPv4 rules in IPv4 form, as clients' addresses are.
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%w: allowed_cidrs: %q: an IPv4-mapped prefix needs at least 96 bits", ErrInvalid, printable(s))
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func normalizeCIDRs(in []string) ([]string, error) {
	return sortedSet("allowed_cidrs", in, MaxCIDRs, func(s string) (string, error) {
		p, err := ParseCIDR(s)
		return p.String(), err
	})
}

// ValidMetaName accepts 1 to 32 of a-z, 0-9 and '-' (it becomes part of
// the header x-keygate-meta-<name>).
func ValidMetaName(name string) bool {
	if name == "" || len(name) > maxMetaName {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func validateMeta(m map[string]string) error {
	if len(m) > MaxMeta {
		return fmt.Errorf("%w: meta: at most %d entries", ErrInvalid, MaxMeta)
	}
	for k, v := range m {
		if !ValidMetaName(k) {
			return fmt.Errorf("%w: meta: name %q: want 1 to 32 of a-z, 0-9 and '-'", ErrInvalid, printable(k))
		}
		if len(v) > maxMetaValue || !visibleASCII(v) {
			return fmt.Errorf("%w: meta: %s: value must be at most %d visible ASCII characters", ErrInvalid, k, maxMetaValue)
		}
	}
	return nil
}

func validateUses(remaining *int64, refill *Refill) error {
	if remaining != nil && (*remaining < 0 || *remaining > MaxRemaining) {
		return fmt.Errorf("%w: remaining: %d: want 0 to %d", ErrInvalid, *remaining, int64(MaxRemaining))
	}
	if refill == nil {
		return nil
	}
	if remaining == nil {
		return fmt.Errorf("%w: refill: needs remaining uses", ErrInvalid)
	}
	if refill.Interval != RefillDaily && refill.Interval != RefillMonthly {
		return fmt.Errorf("%w: refill: interval %q: want daily or monthly", ErrInvalid, printable(refill.Interval))
	}
	if refill.Amount < 1 || refill.Amount > MaxRemaining {
		return fmt.Errorf("%w: refill: amount %d: want 1 to %d", ErrInvalid, refill.Amount, int64(MaxRemaining))
	}
	return nil
}

// refillPeriod names the UTC period at t of a refill interval: the day
// ("2026-11-30") or the month ("2026-11"); "" without a refill.
func refillPeriod(interval string, t time.Time) string {
	switch interval {
	case RefillDaily:
		return t.UTC().Format("2006-01-02")
	case RefillMonthly:
		return t.UTC().Format("2006-01")
	}
	return ""
}

// entitlementColumns is the stored form of an Entitlements' JSON columns.
type entitlementColumns struct {
	scopes, cidrs, meta, limits string
}

func (e Entitlements) columns() entitlementColumns {
	scopes, cidrs := e.Scopes, e.AllowedCIDRs
	if scopes == nil {
		scopes = []string{}
	}
	if cidrs == nil {
		cidrs = []string{}
	}
	meta, limits := e.Meta, e.Limits
	if meta == nil {
		meta = map[string]string{}
	}
	if limits == nil {
		limits = Limits{}
	}
	// Slices of strings and maps of strings and int64 always marshal.
	s, _ := json.Marshal(scopes)
	c, _ := json.Marshal(cidrs)
	m, _ := json.Marshal(meta)
	l, _ := json.Marshal(limits)
	return entitlementColumns{string(s), string(c), string(m), string(l)}
}

// entitlementScan receives the entitlement columns of a row.
type entitlementScan struct {
	scopes, cidrs, meta, limits string
	remaining                   sql.NullInt64
	interval                    string
	amount                      int64
	period                      string
}

// dest lists the scan destinations in the order of entitlementSelect.
func (s *entitlementScan) dest() []any {
	return []any{&s.scopes, &s.cidrs, &s.meta, &s.limits, &s.remaining, &s.interval, &s.amount, &s.period}
}

// entitlementSelect are the entitlement columns of keys (with a table
// alias prefix such as "k.").
func entitlementSelect(alias string) string {
	cols := []string{"scopes", "allowed_cidrs", "meta", "limits", "remaining", "refill_interval", "refill_amount", "refill_period"}
	for i, c := range cols {
		cols[i] = alias + c
	}
	return strings.Join(cols, ", ")
}

// entitlements decodes the scanned columns. Remaining is what is left now:
// a refill due in a period no spend has reached yet is already counted, so
// listings and the policy's hint agree with what SpendUse will do.
func (s *entitlementScan) entitlements(now time.Time) (Entitlements, error) {
	var e Entitlements
	var err error
	if e.Scopes, err = decodeList(s.scopes); err != nil {
		return e, fmt.Errorf("scopes: %w", err)
	}
	if e.AllowedCIDRs, err = decodeList(s.cidrs); err != nil {
		return e, fmt.Errorf("allowed_cidrs: %w", err)
	}
	if e.Meta, err = decodeMeta(s.meta); err != nil {
		return e, fmt.Errorf("meta: %w", err)
	}
	if e.Limits, err = parseLimits(s.limits); err != nil {
		return e, err
	}
	if len(e.Scopes) == 0 {
		e.Scopes = nil
	}
	if len(e.AllowedCIDRs) == 0 {
		e.AllowedCIDRs = nil
	}
	if s.remaining.Valid {
		r := s.remaining.Int64
		if s.interval != "" {
			e.Refill = &Refill{Interval: s.interval, Amount: s.amount}
			if refillPeriod(s.interval, now) != s.period {
				r = s.amount
			}
		}
		e.Remaining = &r
	}
	return e, nil
}

// usesColumns is the stored form of remaining uses and their refill at now:
// a new refill counts as done in the current period.
type usesColumns struct {
	remaining sql.NullInt64
	interval  string
	amount    int64
	period    string
}

func (e Entitlements) usesColumns(now time.Time) usesColumns {
	var u usesColumns
	if e.Remaining != nil {
		u.remaining = sql.NullInt64{Int64: *e.Remaining, Valid: true}
	}
	if e.Refill != nil {
		u.interval, u.amount, u.period = e.Refill.Interval, e.Refill.Amount, refillPeriod(e.Refill.Interval, now)
	}
	return u
}
