package keystore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// factsQuery reads no s.id or a.id: the joins make them k.site_id and
// s.account_id, and every column read costs each key-cache miss (the
// SQLite driver reads each column's name and declared type on every run).
var factsQuery = `SELECT k.id, k.site_id, k.mode, k.name, k.prefix, k.created_at, k.last_used_at, k.expires_at, k.revoked_at,
	s.account_id, s.domains, s.active, s.created_at, s.updated_at,
	a.plan, a.status, a.created_at, a.updated_at, s.limits, a.limits, ` + entitlementSelect("k.") + `
	FROM keys k JOIN sites s ON s.id = k.site_id JOIN accounts a ON a.id = s.account_id`

// LookupKey finds the key stored under any of the digests (one per pepper).
func (s *Store) LookupKey(ctx context.Context, digests []Digest) (KeyFacts, error) {
	switch len(digests) {
	case 0:
		return KeyFacts{}, ErrNotFound
	case 1:
		return s.lookupFacts(ctx, factsQuery+` WHERE k.digest = $1`, string(digests[0]))
	}
	in, args := digestIn("k.digest", digests)
	return s.lookupFacts(ctx, factsQuery+` WHERE `+in, args...)
}

// LookupKeyID finds a key by id, for credentials (access tokens) that name
// the key instead of carrying it.
func (s *Store) LookupKeyID(ctx context.Context, id string) (KeyFacts, error) {
	return s.lookupFacts(ctx, factsQuery+` WHERE k.id = $1`, id)
}

func (s *Store) lookupFacts(ctx context.Context, q string, args ...any) (KeyFacts, error) {
	var f KeyFacts
	var mode, domains, status string
	var kc, sc, su, ac, au int64
	var used, expires, revoked sql.NullInt64
	var siteLimits, accountLimits string
	var ent entitlementScan
	err := s.stmts.scanRow(ctx, s.db, q, args, append([]any{&f.Key.ID, &f.Key.SiteID, &mode, &f.Key.Name, &f.Key.Prefix, &kc, &used, &expires, &revoked,
		&f.Site.AccountID, &domains, &f.Site.Active, &sc, &su,
		&f.Account.Plan, &status, &ac, &au, &siteLimits, &accountLimits}, ent.dest()...)...)
	if err != nil {
		return KeyFacts{}, fmt.Errorf("keystore: lookup key: %w", notFound(err))
	}
	if f.Key.Entitlements, err = ent.entitlements(s.now()); err != nil {
		return KeyFacts{}, fmt.Errorf("keystore: lookup key: %w", err)
	}
	if f.Site.Limits, err = parseLimits(siteLimits); err != nil {
		return KeyFacts{}, fmt.Errorf("keystore: lookup key: site %w", err)
	}
	if f.Account.Limits, err = parseLimits(accountLimits); err != nil {
		return KeyFacts{}, fmt.Errorf("keystore: lookup key: account %w", err)
	}
	if f.Site.Domains, err = decodeList(domains); err != nil {
		return KeyFacts{}, fmt.Errorf("keystore: lookup key: domains: %w", err)
	}
	f.Site.ID, f.Account.ID = f.Key.SiteID, f.Site.AccountID
	f.Key.Mode, f.Key.CreatedAt = Mode(mode), fromMillis(kc)
	f.Key.LastUsedAt, f.Key.ExpiresAt, f.Key.RevokedAt = fromOptMillis(used), fromOptMillis(expires), fromOptMillis(revoked)
	f.Site.CreatedAt, f.Site.UpdatedAt = fromMillis(sc), fromMillis(su)
	f.Account.Status, f.Account.CreatedAt, f.Account.UpdatedAt = AccountStatus(status), fromMillis(ac), fromMillis(au)
	return f, nil
}

// LookupSite reads a site with its account, for public routes.
func (s *Store) LookupSite(ctx context.Context, id string) (SiteFacts, error) {
	site, err := readSite(ctx, s.db, id)
	if err != nil {
		return SiteFacts{}, fmt.Errorf("keystore: lookup site: %w", err)
	}
	a, err := s.Account(ctx, site.AccountID)
	if err != nil {
		return SiteFacts{}, fmt.Errorf("keystore: lookup site: %w", err)
	}
	return SiteFacts{Site: site, Account: a}, nil
}

// TouchKeys records last_used_at for keys. It is not a change a cache must
// see, so it appends nothing to the change log.
func (s *Store) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	defer s.lockWrite()()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("keystore: touch keys: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck
	for id, at := range used {
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)`, millis(at), id); err != nil {
			return fmt.Errorf("keystore: touch keys: %w", err)
		}
	}
	return tx.Commit()
}
