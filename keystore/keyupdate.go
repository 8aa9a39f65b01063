package keystore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"
)

// KeyPatch changes some of a key's attributes; what it leaves nil (or
// false) is kept. Clear* runs before the matching set, so a patch can
// replace a whole map.
type KeyPatch struct {
	Name *string
	// Scopes and AllowedCIDRs replace the whole list; an empty list
	// removes the restriction.
	Scopes       *[]string
	AllowedCIDRs *[]string
	// Meta sets entries; a nil value removes one.
	Meta      map[string]*string
	ClearMeta bool
	// Limits sets limits by name; a nil value removes one.
	Limits      map[string]*int64
	ClearLimits bool
	// Remaining sets the uses left (counted from now); ClearRemaining
	// makes the key unmetered and drops its refill.
	Remaining      *int64
	ClearRemaining bool
	Refill         *Refill
	ClearRefill    bool
}

// Empty reports whether the patch changes nothing.
func (p KeyPatch) Empty() bool {
	return p.Name == nil && p.Scopes == nil && p.AllowedCIDRs == nil && p.Meta == nil && !p.ClearMeta &&
		p.Limits == nil && !p.ClearLimits && p.Remaining == nil && !p.ClearRemaining && p.Refill == nil && !p.ClearRefill
}

// touchesUses reports whether the patch writes the remaining-uses columns,
// which SpendUse also writes.
func (p KeyPatch) touchesUses() bool {
	return p.Remaining != nil || p.ClearRemaining || p.Refill != nil || p.ClearRefill
}

// apply returns k's entitlements with the patch applied.
func (p KeyPatch) apply(e Entitlements) Entitlements {
	e = e.clone()
	if p.Scopes != nil {
		e.Scopes = slices.Clone(*p.Scopes)
	}
	if p.AllowedCIDRs != nil {
		e.AllowedCIDRs = slices.Clone(*p.AllowedCIDRs)
	}
	if p.ClearMeta {
		e.Meta = nil
	}
	for k, v := range p.Meta {
		if e.Meta == nil {
			e.Meta = map[string]string{}
		}
		if v == nil {
			delete(e.Meta, k)
		} else {
			e.Meta[k] = *v
		}
	}
	if p.ClearLimits {
		e.Limits = nil
	}
	for k, v := range p.Limits {
		if e.Limits == nil {
			e.Limits = Limits{}
		}
		if v == nil {
			delete(e.Limits, k)
		} else {
			e.Limits[k] = *v
		}
	}
	if p.ClearRemaining {
		e.Remaining, e.Refill = nil, nil
	}
	if p.ClearRefill {
		e.Refill = nil
	}
	if p.Remaining != nil {
		e.Remaining = clonePtr(p.Remaining)
	}
	if p.Refill != nil {
		e.Refill = clonePtr(p.Refill)
	}
	return e
}

// UpdateKey changes a key's name and entitlements in one transaction that
// appends to the change log, so every replica's cache drops the key, and
// to the audit trail. A revoked key can still be changed (it stays
// revoked).
func (s *Store) UpdateKey(ctx context.Context, id string, p KeyPatch) (Key, error) {
	if p.Name != nil && len(*p.Name) > 200 {
		return Key{}, fmt.Errorf("keystore: update key: %w: name: longer than 200 characters", ErrInvalid)
	}
	var key Key
	err := s.write(ctx, "update key", func(tx *sql.Tx, log txLog) error {
		now := fromMillis(log.at)
		old, err := scanKey(tx.QueryRowContext(ctx, keyColumns+` WHERE id = $1`, id), now)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w: key %q", ErrNotFound, id)
			}
			return err
		}
		ent := p.apply(old.Entitlements)
		if err := ent.Normalize(); err != nil {
			return err
		}
		name := old.Name
		if p.Name != nil {
			name = *p.Name
		}
		cols := ent.columns()
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET name = $1, scopes = $2, allowed_cidrs = $3, meta = $4, limits = $5 WHERE id = $6`,
			name, cols.scopes, cols.cidrs, cols.meta, cols.limits, id); err != nil {
			return err
		}
		if p.touchesUses() {
			if err := writeUses(ctx, tx, id, old.Entitlements, ent, now); err != nil {
				return err
			}
		}
		if key, err = scanKey(tx.QueryRowContext(ctx, keyColumns+` WHERE id = $1`, id), now); err != nil {
			return err
		}
		return log.add(ctx, EntityKey, id)
	})
	return key, err
}

// writeUses stores a patched remaining count and refill. A refill whose
// interval is unchanged keeps its period, so changing only its amount does
// not count as a refill now.
func writeUses(ctx context.Context, tx *sql.Tx, id string, old, ent Entitlements, now time.Time) error {
	u := ent.usesColumns(now)
	keepPeriod := old.Refill != nil && ent.Refill != nil && old.Refill.Interval == ent.Refill.Interval &&
		old.Remaining != nil && ent.Remaining != nil && *old.Remaining == *ent.Remaining
	if keepPeriod {
		_, err := tx.ExecContext(ctx, `UPDATE keys SET refill_interval = $1, refill_amount = $2 WHERE id = $3`, u.interval, u.amount, id)
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE keys SET remaining = $1, refill_interval = $2, refill_amount = $3, refill_period = $4 WHERE id = $5`,
		u.remaining, u.interval, u.amount, u.period, id)
	return err
}

// SpendUse takes one use from a metered key: one conditional UPDATE (the
// row is the authoritative count), so exactly N calls succeed for N uses
// however many replicas spend at once. A refill due in the current UTC day
// or month is applied in the same statement. It returns the uses left and
// whether the use was granted; a key without remaining uses is unmetered
// (ok, remaining -1, no write). It appends nothing to the change log:
// cached facts keep the remaining count they were read with, a hint for the
// policy, not the count. Callers skip keys whose facts have no Remaining
// (setting uses on a key is a change-log write, so the cache learns of it):
// for such a key SpendUse costs a read to find it unmetered.
func (s *Store) SpendUse(ctx context.Context, keyID string, now time.Time) (remaining int64, ok bool, err error) {
	day, month := refillPeriod(RefillDaily, now), refillPeriod(RefillMonthly, now)
	// due is true when a refill belongs to a period no spend has reached.
	const due = `(refill_interval <> '' AND refill_period <> CASE refill_interval WHEN 'daily' THEN $2 ELSE $3 END)`
	err = s.db.QueryRowContext(ctx, `UPDATE keys SET
		remaining = CASE WHEN `+due+` THEN refill_amount - 1 ELSE remaining - 1 END,
		refill_period = CASE refill_interval WHEN 'daily' THEN $2 WHEN 'monthly' THEN $3 ELSE refill_period END
		WHERE id = $1 AND remaining IS NOT NULL AND (remaining > 0 OR (`+due+` AND refill_amount > 0))
		RETURNING remaining`, keyID, day, month).Scan(&remaining)
	if err == nil {
		return remaining, true, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, false, fmt.Errorf("keystore: spend use: %w: %w", ErrUnavailable, err)
	}
	var left sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT remaining FROM keys WHERE id = $1`, keyID).Scan(&left); err != nil {
		return 0, false, fmt.Errorf("keystore: spend use: key %q: %w", keyID, notFound(err))
	}
	if !left.Valid {
		return -1, true, nil
	}
	return left.Int64, false, nil
}
