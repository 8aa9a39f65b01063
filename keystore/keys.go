package keystore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// KeySpec describes a key to create.
type KeySpec struct {
	SiteID    string
	Mode      Mode
	Name      string
	ExpiresAt *time.Time
	// Entitlements narrow what the key may do (the zero value: nothing).
	Entitlements Entitlements
}

func (s *Store) validSpec(spec KeySpec) error {
	if _, err := ParseMode(string(spec.Mode)); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(spec.Name) > 200 {
		return fmt.Errorf("%w: key name longer than 200 characters", ErrInvalid)
	}
	if spec.ExpiresAt != nil && !spec.ExpiresAt.After(s.now()) {
		return fmt.Errorf("%w: expires_at is in the past", ErrInvalid)
	}
	return spec.Entitlements.Validate()
}

// CreateKey generates a key for a site and stores only its digest. The
// returned Secret is the only time the key exists outside its owner's hands.
func (s *Store) CreateKey(ctx context.Context, spec KeySpec) (Key, Secret, error) {
	if err := s.validSpec(spec); err != nil {
		return Key{}, "", fmt.Errorf("keystore: create key: %w", err)
	}
	var key Key
	var secret Secret
	err := s.write(ctx, "create key", func(tx *sql.Tx, log txLog) error {
		var err error
		key, secret, err = s.insertKey(ctx, tx, log, spec)
		return err
	})
	return key, secret, err
}

// RotateSiteKey revokes every active key of a site and creates one new key,
// in one transaction: no moment exists with both or neither.
func (s *Store) RotateSiteKey(ctx context.Context, spec KeySpec) (Key, Secret, []string, error) {
	return s.RotateSiteKeyGrace(ctx, spec, 0)
}

// MaxGrace bounds the grace window of a rotation.
const MaxGrace = 30 * 24 * time.Hour

// RotateSiteKeyGrace is RotateSiteKey with a grace window: the old keys stay
// valid for grace more (their revoked_at is set in the future) so that
// clients can switch over. A key already in a longer grace is cut to this
// one; a shorter one is kept.
func (s *Store) RotateSiteKeyGrace(ctx context.Context, spec KeySpec, grace time.Duration) (Key, Secret, []string, error) {
	return s.RotateSiteKeys(ctx, spec, "", grace)
}

func (s *Store) insertKey(ctx context.Context, tx *sql.Tx, log txLog, spec KeySpec) (Key, Secret, error) {
	if _, err := readSite(ctx, tx, spec.SiteID); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Key{}, "", fmt.Errorf("%w: site %q", ErrNotFound, spec.SiteID)
		}
		return Key{}, "", err
	}
	secret, err := s.format.Generate(spec.Mode)
	if err != nil {
		return Key{}, "", err
	}
	parsed, err := s.format.Parse(secret.Reveal())
	if err != nil {
		return Key{}, "", fmt.Errorf("generated key does not parse: %w", err)
	}
	key, err := s.insertDigest(ctx, tx, log, spec, s.digester.Primary(secret.Reveal()), parsed.Display)
	return key, secret, err
}

// ImportKey stores a key issued by an older system: any string, with the mode
// given at import. Only its digest is kept.
func (s *Store) ImportKey(ctx context.Context, spec KeySpec, raw string) (Key, error) {
	if err := s.validSpec(spec); err != nil {
		return Key{}, fmt.Errorf("keystore: import key: %w", err)
	}
	if !LooksImported(raw) {
		return Key{}, fmt.Errorf("keystore: import key: %w: want 16 to %d visible ASCII characters", ErrInvalid, MaxKeyLen)
	}
	if s.format.tokenShaped(raw) {
		return Key{}, fmt.Errorf("keystore: import key: %w: it starts like a keygate token (%s_at_…, %s_rt_…)", ErrInvalid, s.format.Prefix, s.format.Prefix)
	}
	if err := s.format.presentable(raw); err != nil {
		return Key{}, fmt.Errorf("keystore: import key: %w: %w", ErrInvalid, err)
	}
	// Listings show a quarter of an imported key at most (4 to 8
	// characters): enough to tell keys apart, never half the secret.
	display := raw[:min(8, len(raw)/4)]
	var key Key
	err := s.write(ctx, "import key", func(tx *sql.Tx, log txLog) error {
		if _, err := readSite(ctx, tx, spec.SiteID); err != nil {
			return err
		}
		var err error
		key, err = s.insertDigest(ctx, tx, log, spec, s.digester.Primary(raw), display)
		return err
	})
	return key, err
}

// LooksImported reports whether raw could be an imported key: 16 to
// MaxKeyLen visible ASCII characters, what ImportKey accepts.
func LooksImported(raw string) bool {
	return len(raw) >= 16 && len(raw) <= MaxKeyLen && visibleASCII(raw)
}

func visibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func (s *Store) insertDigest(ctx context.Context, tx *sql.Tx, log txLog, spec KeySpec, d Digest, display string) (Key, error) {
	id, err := randomID("key_", 20)
	if err != nil {
		return Key{}, err
	}
	ent := spec.Entitlements.clone()
	if err := ent.Normalize(); err != nil {
		return Key{}, err
	}
	key := Key{ID: id, SiteID: spec.SiteID, Mode: spec.Mode, Name: spec.Name, Prefix: display,
		CreatedAt: fromMillis(log.at), ExpiresAt: spec.ExpiresAt, Entitlements: ent}
	if key.ExpiresAt != nil {
		t := key.ExpiresAt.UTC().Truncate(time.Millisecond)
		key.ExpiresAt = &t
	}
	cols, uses := ent.columns(), ent.usesColumns(fromMillis(log.at))
	_, err = tx.ExecContext(ctx, `INSERT INTO keys (id, digest, site_id, mode, name, prefix, created_at, expires_at,
		scopes, allowed_cidrs, meta, limits, remaining, refill_interval, refill_amount, refill_period)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		key.ID, string(d), key.SiteID, string(key.Mode), key.Name, key.Prefix, log.at, optMillis(key.ExpiresAt),
		cols.scopes, cols.cidrs, cols.meta, cols.limits, uses.remaining, uses.interval, uses.amount, uses.period)
	if err != nil {
		if isUnique(err) {
			return Key{}, fmt.Errorf("%w: a key with this digest", ErrConflict)
		}
		return Key{}, err
	}
	return key, log.add(ctx, EntityKey, key.ID)
}

func randomID(prefix string, n int) (string, error) {
	b := make([]byte, 0, len(prefix)+n)
	b = append(b, prefix...)
	max := big.NewInt(int64(len(base62)))
	for range n {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", err
		}
		b = append(b, base62[v.Int64()])
	}
	return string(b), nil
}

// RevokeKey revokes a key now. Revoking a revoked key is not an error and
// keeps the first revocation time; a key in a rotation's grace window is
// revoked now.
func (s *Store) RevokeKey(ctx context.Context, id string) (Key, error) {
	var key Key
	err := s.write(ctx, "revoke key", func(tx *sql.Tx, log txLog) error {
		if _, err := tx.ExecContext(ctx, `UPDATE keys SET revoked_at = $1 WHERE id = $2 AND (revoked_at IS NULL OR revoked_at > $1)`, log.at, id); err != nil {
			return err
		}
		var err error
		if key, err = scanKey(tx.QueryRowContext(ctx, keyColumns+` WHERE id = $1`, id), fromMillis(log.at)); err != nil {
			return err
		}
		return log.add(ctx, EntityKey, id)
	})
	return key, err
}

var keyColumns = `SELECT id, site_id, mode, name, prefix, created_at, last_used_at, expires_at, revoked_at, ` + entitlementSelect("") + ` FROM keys`

// scanKey reads a keyColumns row; now decides whether a refill is due.
func scanKey(r rowScanner, now time.Time) (Key, error) {
	var k Key
	var mode string
	var created int64
	var used, expires, revoked sql.NullInt64
	var ent entitlementScan
	dest := append([]any{&k.ID, &k.SiteID, &mode, &k.Name, &k.Prefix, &created, &used, &expires, &revoked}, ent.dest()...)
	if err := r.Scan(dest...); err != nil {
		return Key{}, notFound(err)
	}
	var err error
	if k.Entitlements, err = ent.entitlements(now); err != nil {
		return Key{}, fmt.Errorf("key %s: %w", k.ID, err)
	}
	k.Mode, k.CreatedAt = Mode(mode), fromMillis(created)
	k.LastUsedAt, k.ExpiresAt, k.RevokedAt = fromOptMillis(used), fromOptMillis(expires), fromOptMillis(revoked)
	return k, nil
}

// Keys lists a site's keys, newest first, at most limit (≤ 1000) after the
// key id cursor `after` ("" for the first page).
func (s *Store) Keys(ctx context.Context, siteID, after string, limit int) ([]Key, error) {
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	if _, err := s.Site(ctx, siteID); err != nil {
		return nil, err
	}
	q := keyColumns + ` WHERE site_id = $1 AND ($2 = '' OR (created_at, id) < (SELECT created_at, id FROM keys WHERE id = $2)) ORDER BY created_at DESC, id DESC LIMIT $3`
	rows, err := s.db.QueryContext(ctx, q, siteID, after, limit)
	now := s.now()
	return collect(rows, err, "list keys", func(r rowScanner) (Key, error) { return scanKey(r, now) })
}

// Key reads one key by id.
func (s *Store) Key(ctx context.Context, id string) (Key, error) {
	k, err := scanKey(s.db.QueryRowContext(ctx, keyColumns+` WHERE id = $1`, id), s.now())
	if err != nil {
		return Key{}, fmt.Errorf("keystore: key %q: %w", id, err)
	}
	return k, nil
}
