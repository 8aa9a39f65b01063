package keystore

import (
	"context"
	"fmt"
)

// The account boundary of the customer key API: whether an account owns a
// key or a site, asked so that another account's object and a missing one
// get the same ErrNotFound after the same single indexed query, with no
// row returned, scanned or parsed for either. (Reading the object and
// comparing its account afterwards would make a foreign id measurably
// slower than a missing one: the row is found, scanned and its JSON
// parsed. See customer's BenchmarkNotFound.)

// AccountOwnsKey returns nil when key id belongs to a site of account, and
// ErrNotFound when the key is missing or another account's.
func (s *Store) AccountOwnsKey(ctx context.Context, account, id string) error {
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM keys k JOIN sites s ON s.id = k.site_id
		WHERE k.id = $1 AND s.account_id = $2`, id, account).Scan(&one)
	if err != nil {
		return fmt.Errorf("keystore: key %q of account %q: %w", id, account, notFound(err))
	}
	return nil
}

// AccountOwnsSite returns nil when site belongs to account, and ErrNotFound
// when it is missing or another account's.
func (s *Store) AccountOwnsSite(ctx context.Context, account, site string) error {
	var one int
	err := s.db.QueryRowContext(ctx, `SELECT 1 FROM sites WHERE id = $1 AND account_id = $2`, site, account).Scan(&one)
	if err != nil {
		return fmt.Errorf("keystore: site %q of account %q: %w", site, account, notFound(err))
	}
	return nil
}
