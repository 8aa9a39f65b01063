package keystore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ChargeQuota adds cost to a quota counter's usage in period, if the total
// stays within limit. One statement does it (an upsert whose update is
// conditional), so concurrent charges from any number of replicas can never
// take a counter past its limit. When the charge would exceed the limit it
// changes nothing and returns the current usage and false.
func (s *Store) ChargeQuota(ctx context.Context, counter, period string, cost, limit int64, at time.Time) (int64, bool, error) {
	if cost <= limit {
		used, err := s.charge(ctx, counter, period, cost, limit, at)
		if err == nil {
			return used, true, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, false, fmt.Errorf("keystore: charge quota: %w: %w", ErrUnavailable, err)
		}
	}
	var used int64
	err := s.stmts.queryRow(ctx, s.db, `SELECT used FROM quota_usage WHERE counter = $1 AND period = $2`, counter, period).Scan(&used)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, false, fmt.Errorf("keystore: charge quota: %w: %w", ErrUnavailable, err)
	}
	return used, false, nil
}

// charge runs the charge as this process's writes take turns; the turn is
// given back even if the driver panics (Check recovers from a panic, and a
// turn kept would stop every later write).
func (s *Store) charge(ctx context.Context, counter, period string, cost, limit int64, at time.Time) (int64, error) {
	defer s.lockWrite()()
	return s.stmts.writeInt64(ctx, s.db, chargeQuota, counter, period, cost, limit, millis(at))
}

// chargeQuota is the charge: an upsert whose update is conditional.
const chargeQuota = `INSERT INTO quota_usage (counter, period, used, quota, updated_at) VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT (counter, period) DO UPDATE SET used = quota_usage.used + excluded.used, quota = excluded.quota, updated_at = excluded.updated_at
	WHERE quota_usage.used + excluded.used <= excluded.quota
	RETURNING used`

// QuotaUsage is one quota counter's usage in one month.
type QuotaUsage struct {
	Counter   string    `json:"counter"`
	Period    string    `json:"period"`
	Used      int64     `json:"used"`
	Quota     int64     `json:"quota"`
	UpdatedAt time.Time `json:"updated_at"`
}

// QuotaUsage reads the usage of the named counters in period; counters never
// charged that month are absent.
func (s *Store) QuotaUsage(ctx context.Context, period string, counters ...string) ([]QuotaUsage, error) {
	var out []QuotaUsage
	for _, c := range counters {
		u := QuotaUsage{Counter: c, Period: period}
		var at int64
		err := s.db.QueryRowContext(ctx, `SELECT used, quota, updated_at FROM quota_usage WHERE counter = $1 AND period = $2`, c, period).
			Scan(&u.Used, &u.Quota, &at)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return nil, fmt.Errorf("keystore: quota usage: %w: %w", ErrUnavailable, err)
		}
		u.UpdatedAt = fromMillis(at)
		out = append(out, u)
	}
	return out, nil
}

// Limits are per-site or per-account overrides of a plan's limits, by name
// (the default policy reads "rate", "burst" and "quota").
type Limits map[string]int64

// Bounds on overrides: they are policy input on every decision.
const (
	maxLimits     = 16
	maxLimitValue = 1_000_000_000_000
)

// Validate accepts at most 16 names of 1 to 32 lower-case letters, digits or
// '_', each with a value from 0 to 10^12.
func (l Limits) Validate() error {
	if len(l) > maxLimits {
		return fmt.Errorf("%w: at most %d limits", ErrInvalid, maxLimits)
	}
	for name, v := range l {
		if name == "" || len(name) > 32 || !lowerToken(name) {
			return fmt.Errorf("%w: limit name %q: want 1 to 32 of a-z, 0-9 and _", ErrInvalid, name)
		}
		if v < 0 || v > maxLimitValue {
			return fmt.Errorf("%w: limit %s=%d: want 0 to %d", ErrInvalid, name, v, int64(maxLimitValue))
		}
	}
	return nil
}

func lowerToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func parseLimits(raw string) (Limits, error) {
	if raw == "{}" {
		return nil, nil // see jsoncol.go
	}
	var l Limits
	if err := json.Unmarshal([]byte(raw), &l); err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}

// SetLimits replaces the limit overrides of a site (EntitySite) or an
// account (EntityAccount); empty limits remove them. Running servers see
// the change through the change log.
func (s *Store) SetLimits(ctx context.Context, entity Entity, id string, l Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if l == nil {
		l = Limits{}
	}
	raw, _ := json.Marshal(l) // a map of int64 always marshals
	var table string
	switch entity {
	case EntitySite:
		table = "sites"
	case EntityAccount:
		table = "accounts"
	default:
		return fmt.Errorf("%w: limits apply to sites and accounts, not %q", ErrInvalid, entity)
	}
	return s.write(ctx, "set limits", func(tx *sql.Tx, log txLog) error {
		res, err := tx.ExecContext(ctx, `UPDATE `+table+` SET limits = $1, updated_at = $2 WHERE id = $3`, string(raw), log.at, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return fmt.Errorf("%w: %s %q", ErrNotFound, entity, id)
		}
		return log.add(ctx, entity, id)
	})
}

// LimitsOf reads the overrides of a site or an account.
func (s *Store) LimitsOf(ctx context.Context, entity Entity, id string) (Limits, error) {
	table := "sites"
	if entity == EntityAccount {
		table = "accounts"
	}
	var raw string
	if err := s.db.QueryRowContext(ctx, `SELECT limits FROM `+table+` WHERE id = $1`, id).Scan(&raw); err != nil {
		return nil, fmt.Errorf("keystore: limits of %s %q: %w", entity, id, notFound(err))
	}
	return parseLimits(raw)
}
