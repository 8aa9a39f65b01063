package keystore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The read side of accounts and sites: listings with the same cursor
// pagination as Keys (a page of at most limit, after the id `after`).

// MaxPage is the largest page a listing returns.
const MaxPage = 1000

func pageSize(limit int) int {
	if limit <= 0 || limit > MaxPage {
		return MaxPage
	}
	return limit
}

// Accounts lists accounts ordered by id, at most limit after the account id
// `after` ("" for the first page).
func (s *Store) Accounts(ctx context.Context, after string, limit int) ([]Account, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, plan, status, created_at, updated_at FROM accounts WHERE id > $1 ORDER BY id LIMIT $2`,
		after, pageSize(limit))
	return collect(rows, err, "list accounts", scanAccount)
}

// Sites lists sites ordered by id, at most limit after the site id `after`;
// a non-empty account keeps only that account's sites (which must exist).
func (s *Store) Sites(ctx context.Context, account, after string, limit int) ([]Site, error) {
	if account != "" {
		if _, err := s.Account(ctx, account); err != nil {
			return nil, err
		}
	}
	rows, err := s.db.QueryContext(ctx, siteColumns+` WHERE ($1 = '' OR account_id = $1) AND id > $2 ORDER BY id LIMIT $3`,
		account, after, pageSize(limit))
	return collect(rows, err, "list sites", scanSite)
}

// collect scans every row of a listing query.
func collect[T any](rows *sql.Rows, err error, op string, scan func(rowScanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, fmt.Errorf("keystore: %s: %w: %w", op, ErrUnavailable, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("keystore: %s: %w", op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keystore: %s: %w: %w", op, ErrUnavailable, err)
	}
	return out, nil
}

// RotateSiteKeys is RotateSiteKeyGrace limited to the keys of one mode
// (revoke "" revokes every mode): rotating the live key leaves the site's
// test keys alone. The new key has spec.Mode; the revoked key ids are
// returned.
func (s *Store) RotateSiteKeys(ctx context.Context, spec KeySpec, revoke Mode, grace time.Duration) (Key, Secret, []string, error) {
	if grace < 0 || grace > MaxGrace {
		return Key{}, "", nil, fmt.Errorf("keystore: rotate key: %w: grace must be between 0 and %s", ErrInvalid, MaxGrace)
	}
	if err := s.validSpec(spec); err != nil {
		return Key{}, "", nil, fmt.Errorf("keystore: rotate key: %w", err)
	}
	var key Key
	var secret Secret
	var revoked []string
	err := s.write(ctx, "rotate key", func(tx *sql.Tx, log txLog) error {
		revokeAt := log.at + grace.Milliseconds()
		rows, err := tx.QueryContext(ctx, `SELECT id FROM keys WHERE site_id = $1 AND (revoked_at IS NULL OR revoked_at > $2) AND ($3 = '' OR mode = $3)`,
			spec.SiteID, revokeAt, string(revoke))
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			revoked = append(revoked, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET revoked_at = $1 WHERE site_id = $2 AND (revoked_at IS NULL OR revoked_at > $1) AND ($3 = '' OR mode = $3)`,
			revokeAt, spec.SiteID, string(revoke)); err != nil {
			return err
		}
		for _, id := range revoked {
			if err := log.add(ctx, EntityKey, id); err != nil {
				return err
			}
		}
		key, secret, err = s.insertKey(ctx, tx, log, spec)
		return err
	})
	return key, secret, revoked, err
}
