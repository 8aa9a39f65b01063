package keystore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"time"
)

// Store is the SQL store of accounts, sites and keys. Every write appends to
// the change log in the same transaction, so a reader that follows the log
// (Follow) sees every write exactly when it is committed.
//
// Queries use $n placeholders and portable types (BIGINT unix milliseconds,
// TEXT) so that one implementation serves SQLite and PostgreSQL.
type Store struct {
	db       *sql.DB
	format   Format
	digester *Digester
	now      func() time.Time
	// begin runs first in each write transaction; PostgreSQL uses it to
	// serialize writers so that change-log order is commit order.
	begin func(ctx context.Context, tx *sql.Tx) error
	// notify runs inside each write transaction after its change rows are
	// appended; PostgreSQL uses it to NOTIFY listeners.
	notify func(ctx context.Context, tx *sql.Tx) error
	// listen, when set, pushes change notifications (see Listen).
	listen func(ctx context.Context, wake chan<- struct{}, log *slog.Logger)
	// stmts holds the prepared key-facts lookups (the cache-miss path).
	stmts stmtCache
}

// Options configure a Store.
type Options struct {
	Format   Format
	Digester *Digester
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o Options) clock() func() time.Time {
	if o.Now != nil {
		return o.Now
	}
	return time.Now
}

// Open opens the store a DSN names: "sqlite:PATH" (the embedded default) or,
// when a PostgreSQL driver is registered by OpenPostgres, "postgres://…".
// Migrations are applied before Open returns.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		return OpenSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"), opts)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return openPostgres(ctx, dsn, opts)
	}
	return nil, fmt.Errorf("keystore: store %s: want sqlite:PATH or postgres://…", dsnScheme(dsn))
}

// Close closes the database.
func (s *Store) Close() error { return errors.Join(s.stmts.close(), s.db.Close()) }

// DB exposes the database handle for tests and health checks.
func (s *Store) DB() *sql.DB { return s.db }

// Ping reports whether the store answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

func millis(t time.Time) int64 { return t.UnixMilli() }

func fromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func optMillis(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromOptMillis(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromMillis(n.Int64)
	return &t
}

// txLog appends change-log rows inside a write transaction.
type txLog struct {
	tx *sql.Tx
	at int64
	// added counts the rows appended, so that a write that changed nothing
	// a cache holds (refresh tokens, say) wakes no listener.
	added *int
	// events builds the transaction's outbox events (outbox.go).
	events *txEvents
	// targets are the entities to audit (see audit.go).
	targets *[]auditTarget
}

func (l txLog) add(ctx context.Context, e Entity, id string) error {
	_, err := l.tx.ExecContext(ctx, `INSERT INTO changes (entity, entity_id, at) VALUES ($1, $2, $3)`, string(e), id, l.at)
	if err == nil {
		*l.added++
		l.note(e, id, "")
		err = l.events.add(ctx, l, e, id)
	}
	return err
}

// write runs fn in a transaction that ends by notifying listeners when fn
// appended to the change log.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx, log txLog) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("keystore: %s: %w: %w", op, ErrUnavailable, err)
	}
	defer tx.Rollback() //nolint:errcheck // a committed tx makes this a no-op
	if s.begin != nil {
		if err := s.begin(ctx, tx); err != nil {
			return fmt.Errorf("keystore: %s: %w: %w", op, ErrUnavailable, err)
		}
	}
	var added int
	var targets []auditTarget
	log := txLog{tx: tx, at: millis(s.now()), added: &added, events: &txEvents{op: op}, targets: &targets}
	if err := fn(tx, log); err != nil {
		return fmt.Errorf("keystore: %s: %w", op, err)
	}
	if err := s.audit(ctx, tx, op, log.at, targets); err != nil {
		return fmt.Errorf("keystore: %s: %w", op, err)
	}
	if s.notify != nil && added > 0 {
		if err := s.notify(ctx, tx); err != nil {
			return fmt.Errorf("keystore: %s: notify: %w", op, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("keystore: %s: commit: %w", op, err)
	}
	return nil
}

// isUnique recognises unique-constraint violations of both databases without
// importing their drivers' error types.
func isUnique(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint") || strings.Contains(msg, "duplicate key") || strings.Contains(msg, "SQLSTATE 23505")
}

// CreateAccount inserts an account. Status defaults to active.
func (s *Store) CreateAccount(ctx context.Context, a Account) (Account, error) {
	if err := validID("account", a.ID); err != nil {
		return Account{}, err
	}
	if err := validID("plan", a.Plan); err != nil {
		return Account{}, err
	}
	if a.Status == "" {
		a.Status = StatusActive
	}
	if _, err := ParseStatus(string(a.Status)); err != nil {
		return Account{}, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	a.CreatedAt, a.UpdatedAt = now, now
	err := s.write(ctx, "create account", func(tx *sql.Tx, log txLog) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO accounts (id, plan, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)`,
			a.ID, a.Plan, string(a.Status), millis(now))
		if err != nil {
			if isUnique(err) {
				return fmt.Errorf("%w: account %q", ErrConflict, a.ID)
			}
			return err
		}
		return log.add(ctx, EntityAccount, a.ID)
	})
	return a, err
}

// AccountUpdate lists the fields to change; nil leaves a field as it is.
type AccountUpdate struct {
	Plan   *string
	Status *AccountStatus
}

// UpdateAccount changes an account's plan or status.
func (s *Store) UpdateAccount(ctx context.Context, id string, u AccountUpdate) (Account, error) {
	if u.Plan != nil {
		if err := validID("plan", *u.Plan); err != nil {
			return Account{}, err
		}
	}
	if u.Status != nil {
		if _, err := ParseStatus(string(*u.Status)); err != nil {
			return Account{}, err
		}
	}
	var out Account
	err := s.write(ctx, "update account", func(tx *sql.Tx, log txLog) error {
		a, err := scanAccount(tx.QueryRowContext(ctx, `SELECT id, plan, status, created_at, updated_at FROM accounts WHERE id = $1`, id))
		if err != nil {
			return err
		}
		if u.Plan != nil {
			a.Plan = *u.Plan
		}
		if u.Status != nil {
			a.Status = *u.Status
		}
		a.UpdatedAt = fromMillis(log.at)
		if _, err := tx.ExecContext(ctx, `UPDATE accounts SET plan = $1, status = $2, updated_at = $3 WHERE id = $4`,
			a.Plan, string(a.Status), log.at, id); err != nil {
			return err
		}
		out = a
		return log.add(ctx, EntityAccount, id)
	})
	return out, err
}

// Account reads one account.
func (s *Store) Account(ctx context.Context, id string) (Account, error) {
	a, err := scanAccount(s.db.QueryRowContext(ctx, `SELECT id, plan, status, created_at, updated_at FROM accounts WHERE id = $1`, id))
	if err != nil {
		return Account{}, fmt.Errorf("keystore: account %q: %w", id, err)
	}
	return a, nil
}

type rowScanner interface{ Scan(dest ...any) error }

func scanAccount(r rowScanner) (Account, error) {
	var a Account
	var status string
	var created, updated int64
	if err := r.Scan(&a.ID, &a.Plan, &status, &created, &updated); err != nil {
		return Account{}, notFound(err)
	}
	a.Status, a.CreatedAt, a.UpdatedAt = AccountStatus(status), fromMillis(created), fromMillis(updated)
	return a, nil
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// NormalizeDomains lower-cases and validates site domains: host names, with an
// optional leading "*." wildcard and an optional port.
func NormalizeDomains(domains []string) ([]string, error) {
	if len(domains) > 100 {
		return nil, fmt.Errorf("%w: at most 100 domains per site", ErrInvalid)
	}
	out := make([]string, 0, len(domains))
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSpace(d))
		host := strings.TrimPrefix(d, "*.")
		if h, port, ok := strings.Cut(host, ":"); ok {
			host = h
			if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
				return nil, fmt.Errorf("%w: domain %q: bad port", ErrInvalid, d)
			}
		}
		if host == "" || len(host) > 253 || strings.Trim(host, "abcdefghijklmnopqrstuvwxyz0123456789.-") != "" ||
			strings.HasPrefix(host, ".") || strings.HasSuffix(host, ".") || strings.Contains(host, "..") {
			return nil, fmt.Errorf("%w: domain %q: want a host name such as example.com or *.example.com", ErrInvalid, d)
		}
		out = append(out, d)
	}
	return out, nil
}

// CreateSite inserts a site of an existing account.
func (s *Store) CreateSite(ctx context.Context, site Site) (Site, error) {
	if err := validID("site", site.ID); err != nil {
		return Site{}, err
	}
	domains, err := NormalizeDomains(site.Domains)
	if err != nil {
		return Site{}, err
	}
	site.Domains = domains
	now := s.now().UTC().Truncate(time.Millisecond)
	site.CreatedAt, site.UpdatedAt = now, now
	err = s.write(ctx, "create site", func(tx *sql.Tx, log txLog) error {
		if _, err := scanAccount(tx.QueryRowContext(ctx, `SELECT id, plan, status, created_at, updated_at FROM accounts WHERE id = $1`, site.AccountID)); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w: account %q", ErrNotFound, site.AccountID)
			}
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO sites (id, account_id, domains, active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)`,
			site.ID, site.AccountID, domainsJSON(site.Domains), site.Active, millis(now))
		if err != nil {
			if isUnique(err) {
				return fmt.Errorf("%w: site %q", ErrConflict, site.ID)
			}
			return err
		}
		return log.add(ctx, EntitySite, site.ID)
	})
	return site, err
}

// SiteUpdate lists the fields to change; nil leaves a field as it is.
type SiteUpdate struct {
	Domains *[]string
	Active  *bool
}

// UpdateSite changes a site's domains or whether it is active.
func (s *Store) UpdateSite(ctx context.Context, id string, u SiteUpdate) (Site, error) {
	if u.Domains != nil {
		d, err := NormalizeDomains(*u.Domains)
		if err != nil {
			return Site{}, err
		}
		u.Domains = &d
	}
	var out Site
	err := s.write(ctx, "update site", func(tx *sql.Tx, log txLog) error {
		site, err := scanSite(tx.QueryRowContext(ctx, siteColumns+` WHERE id = $1`, id))
		if err != nil {
			return err
		}
		if u.Domains != nil {
			site.Domains = *u.Domains
		}
		if u.Active != nil {
			site.Active = *u.Active
		}
		site.UpdatedAt = fromMillis(log.at)
		if _, err := tx.ExecContext(ctx, `UPDATE sites SET domains = $1, active = $2, updated_at = $3 WHERE id = $4`,
			domainsJSON(site.Domains), site.Active, log.at, id); err != nil {
			return err
		}
		out = site
		return log.add(ctx, EntitySite, id)
	})
	return out, err
}

const siteColumns = `SELECT id, account_id, domains, active, created_at, updated_at FROM sites`

// Site reads one site.
func (s *Store) Site(ctx context.Context, id string) (Site, error) {
	site, err := scanSite(s.db.QueryRowContext(ctx, siteColumns+` WHERE id = $1`, id))
	if err != nil {
		return Site{}, fmt.Errorf("keystore: site %q: %w", id, err)
	}
	return site, nil
}

func scanSite(r rowScanner) (Site, error) {
	var site Site
	var domains string
	var created, updated int64
	if err := r.Scan(&site.ID, &site.AccountID, &domains, &site.Active, &created, &updated); err != nil {
		return Site{}, notFound(err)
	}
	if err := json.Unmarshal([]byte(domains), &site.Domains); err != nil {
		return Site{}, fmt.Errorf("site %q: domains: %w", site.ID, err)
	}
	site.CreatedAt, site.UpdatedAt = fromMillis(created), fromMillis(updated)
	return site, nil
}

func domainsJSON(d []string) string {
	if d == nil {
		d = []string{}
	}
	b, _ := json.Marshal(d) // a []string always marshals
	return string(b)
}

// KeySpec describes a key to create.
type KeySpec struct {
	SiteID    string
	Mode      Mode
	Name      string
	ExpiresAt *time.Time
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
	return nil
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
	if _, err := scanSite(tx.QueryRowContext(ctx, siteColumns+` WHERE id = $1`, spec.SiteID)); err != nil {
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
		if _, err := scanSite(tx.QueryRowContext(ctx, siteColumns+` WHERE id = $1`, spec.SiteID)); err != nil {
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
	key := Key{ID: id, SiteID: spec.SiteID, Mode: spec.Mode, Name: spec.Name, Prefix: display,
		CreatedAt: fromMillis(log.at), ExpiresAt: spec.ExpiresAt}
	if key.ExpiresAt != nil {
		t := key.ExpiresAt.UTC().Truncate(time.Millisecond)
		key.ExpiresAt = &t
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO keys (id, digest, site_id, mode, name, prefix, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		key.ID, string(d), key.SiteID, string(key.Mode), key.Name, key.Prefix, log.at, optMillis(key.ExpiresAt))
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
		if key, err = scanKey(tx.QueryRowContext(ctx, keyColumns+` WHERE id = $1`, id)); err != nil {
			return err
		}
		return log.add(ctx, EntityKey, id)
	})
	return key, err
}

const keyColumns = `SELECT id, site_id, mode, name, prefix, created_at, last_used_at, expires_at, revoked_at FROM keys`

func scanKey(r rowScanner) (Key, error) {
	var k Key
	var mode string
	var created int64
	var used, expires, revoked sql.NullInt64
	if err := r.Scan(&k.ID, &k.SiteID, &mode, &k.Name, &k.Prefix, &created, &used, &expires, &revoked); err != nil {
		return Key{}, notFound(err)
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
	if err != nil {
		return nil, fmt.Errorf("keystore: list keys: %w: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	var out []Key
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("keystore: list keys: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// Key reads one key by id.
func (s *Store) Key(ctx context.Context, id string) (Key, error) {
	k, err := scanKey(s.db.QueryRowContext(ctx, keyColumns+` WHERE id = $1`, id))
	if err != nil {
		return Key{}, fmt.Errorf("keystore: key %q: %w", id, err)
	}
	return k, nil
}

const factsQuery = `SELECT k.id, k.site_id, k.mode, k.name, k.prefix, k.created_at, k.last_used_at, k.expires_at, k.revoked_at,
	s.id, s.account_id, s.domains, s.active, s.created_at, s.updated_at,
	a.id, a.plan, a.status, a.created_at, a.updated_at, s.limits, a.limits
	FROM keys k JOIN sites s ON s.id = k.site_id JOIN accounts a ON a.id = s.account_id`

// LookupKey finds the key stored under any of the digests (one per pepper).
func (s *Store) LookupKey(ctx context.Context, digests []Digest) (KeyFacts, error) {
	switch len(digests) {
	case 0:
		return KeyFacts{}, ErrNotFound
	case 1:
		return s.lookupFacts(ctx, factsQuery+` WHERE k.digest = $1`, string(digests[0]))
	}
	args := make([]any, len(digests))
	marks := make([]string, len(digests))
	for i, d := range digests {
		args[i], marks[i] = string(d), fmt.Sprintf("$%d", i+1)
	}
	return s.lookupFacts(ctx, factsQuery+` WHERE k.digest IN (`+strings.Join(marks, ", ")+`)`, args...)
}

// LookupKeyID finds a key by id, for credentials (access tokens) that name
// the key instead of carrying it.
func (s *Store) LookupKeyID(ctx context.Context, id string) (KeyFacts, error) {
	return s.lookupFacts(ctx, factsQuery+` WHERE k.id = $1`, id)
}

func (s *Store) lookupFacts(ctx context.Context, q string, args ...any) (KeyFacts, error) {
	r := s.stmts.queryRow(ctx, s.db, q, args...)
	var f KeyFacts
	var mode, domains, status string
	var kc, sc, su, ac, au int64
	var used, expires, revoked sql.NullInt64
	var siteLimits, accountLimits string
	err := r.Scan(&f.Key.ID, &f.Key.SiteID, &mode, &f.Key.Name, &f.Key.Prefix, &kc, &used, &expires, &revoked,
		&f.Site.ID, &f.Site.AccountID, &domains, &f.Site.Active, &sc, &su,
		&f.Account.ID, &f.Account.Plan, &status, &ac, &au, &siteLimits, &accountLimits)
	if err != nil {
		return KeyFacts{}, fmt.Errorf("keystore: lookup key: %w", notFound(err))
	}
	if f.Site.Limits, err = parseLimits(siteLimits); err != nil {
		return KeyFacts{}, fmt.Errorf("keystore: lookup key: site %w", err)
	}
	if f.Account.Limits, err = parseLimits(accountLimits); err != nil {
		return KeyFacts{}, fmt.Errorf("keystore: lookup key: account %w", err)
	}
	if err := json.Unmarshal([]byte(domains), &f.Site.Domains); err != nil {
		return KeyFacts{}, fmt.Errorf("keystore: lookup key: domains: %w", err)
	}
	f.Key.Mode, f.Key.CreatedAt = Mode(mode), fromMillis(kc)
	f.Key.LastUsedAt, f.Key.ExpiresAt, f.Key.RevokedAt = fromOptMillis(used), fromOptMillis(expires), fromOptMillis(revoked)
	f.Site.CreatedAt, f.Site.UpdatedAt = fromMillis(sc), fromMillis(su)
	f.Account.Status, f.Account.CreatedAt, f.Account.UpdatedAt = AccountStatus(status), fromMillis(ac), fromMillis(au)
	return f, nil
}

// LookupSite reads a site with its account, for public routes.
func (s *Store) LookupSite(ctx context.Context, id string) (SiteFacts, error) {
	site, err := scanSite(s.db.QueryRowContext(ctx, siteColumns+` WHERE id = $1`, id))
	if err != nil {
		return SiteFacts{}, fmt.Errorf("keystore: lookup site: %w", err)
	}
	a, err := s.Account(ctx, site.AccountID)
	if err != nil {
		return SiteFacts{}, fmt.Errorf("keystore: lookup site: %w", err)
	}
	return SiteFacts{Site: site, Account: a}, nil
}

// Changes returns change-log rows after seq, oldest first, at most limit.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT seq, entity, entity_id, at FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("keystore: changes: %w: %w", ErrUnavailable, err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		var entity string
		var at int64
		if err := rows.Scan(&c.Seq, &entity, &c.ID, &at); err != nil {
			return nil, fmt.Errorf("keystore: changes: %w", err)
		}
		c.Entity, c.At = Entity(entity), fromMillis(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("keystore: changes: %w: %w", ErrUnavailable, err)
	}
	return out, nil
}

// LastChange is the newest change-log sequence number (0 when empty).
func (s *Store) LastChange(ctx context.Context) (int64, error) {
	var seq sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT MAX(seq) FROM changes`).Scan(&seq); err != nil {
		return 0, fmt.Errorf("keystore: last change: %w: %w", ErrUnavailable, err)
	}
	return seq.Int64, nil
}

// TouchKeys records last_used_at for keys. It is not a change a cache must
// see, so it appends nothing to the change log.
func (s *Store) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
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
