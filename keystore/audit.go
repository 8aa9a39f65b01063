package keystore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Audit trail: every write records who made it (the actor the caller's
// context carries), what it did, to which entity, and a summary of the
// entity before and after, in the same transaction as the write. The
// summary of "before" is the previous row's "after" for the same target,
// so nothing is read twice; entities written before the audit trail
// existed have no "before" on their first audited write.

type actorKey struct{}

// WithActor names who is writing through ctx: "admin:<token name>",
// "cli:<user>@<host>". Writes without one are keygate's own ("keygate").
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// WithLazyActor is WithActor with the name made the first time a write
// asks for it, at most once: the CLI's actor takes a look-up in the user
// database (cgo, /etc/nsswitch.conf, /etc/passwd) that commands which
// write nothing, and serve's way to its first SERVING, need not make.
func WithLazyActor(ctx context.Context, actor func() string) context.Context {
	return context.WithValue(ctx, actorKey{}, lazyActor(sync.OnceValue(actor)))
}

type lazyActor func() string

// ActorFrom is the actor ctx carries, or "keygate".
func ActorFrom(ctx context.Context) string {
	if actor, ok := ctx.Value(actorKey{}).(lazyActor); ok {
		if a := actor(); a != "" {
			return a
		}
		return "keygate"
	}
	return ctxString(ctx, actorKey{}, "keygate")
}

// ctxString is the non-empty string ctx carries under key, or def: what a
// caller tells a write without changing every store call between them.
func ctxString(ctx context.Context, key any, def string) string {
	if v, ok := ctx.Value(key).(string); ok && v != "" {
		return v
	}
	return def
}

// EntityRefreshTokens names a key's refresh tokens in the audit trail
// (revoked together when a used one comes back).
const EntityRefreshTokens Entity = "refresh_tokens"

// auditTarget is one entity a write touched.
type auditTarget struct {
	entity Entity
	id     string
	action string // "" means the write's operation
}

// note records an audited change that has no change-log row.
func (l txLog) note(e Entity, id, action string) {
	*l.targets = append(*l.targets, auditTarget{entity: e, id: id, action: action})
}

// audit appends one row per distinct target of a write.
func (s *Store) audit(ctx context.Context, tx *sql.Tx, op string, at int64, targets []auditTarget) error {
	actor := ActorFrom(ctx)
	seen := make(map[auditTarget]bool, len(targets))
	for _, t := range targets {
		if seen[t] {
			continue
		}
		seen[t] = true
		action := t.action
		if action == "" {
			action = op
		}
		var before sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT after FROM audit WHERE target = $1 AND entity = $2 ORDER BY seq DESC LIMIT 1`,
			t.id, string(t.entity)).Scan(&before)
		if err != nil && err != sql.ErrNoRows {
			return fmt.Errorf("audit: %w", err)
		}
		after, err := summary(ctx, tx, t.entity, t.id, at)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit (at, actor, action, entity, target, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			at, actor, action, string(t.entity), t.id, before, after); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
	}
	return nil
}

// summary is the entity's state as JSON: what an operator needs to see a
// change, never a digest or a secret.
func summary(ctx context.Context, tx *sql.Tx, e Entity, id string, at int64) (sql.NullString, error) {
	var v any
	switch e {
	case EntityAccount:
		var a struct {
			ID     string          `json:"id"`
			Plan   string          `json:"plan"`
			Status string          `json:"status"`
			Limits json.RawMessage `json:"limits"`
		}
		var limits string
		if err := tx.QueryRowContext(ctx, `SELECT id, plan, status, limits FROM accounts WHERE id = $1`, id).Scan(&a.ID, &a.Plan, &a.Status, &limits); err != nil {
			return gone(err)
		}
		a.Limits = json.RawMessage(limits)
		v = a
	case EntitySite:
		var st struct {
			ID      string          `json:"id"`
			Account string          `json:"account"`
			Domains json.RawMessage `json:"domains"`
			Active  bool            `json:"active"`
			Limits  json.RawMessage `json:"limits"`
		}
		var domains, limits string
		if err := tx.QueryRowContext(ctx, `SELECT id, account_id, domains, active, limits FROM sites WHERE id = $1`, id).
			Scan(&st.ID, &st.Account, &domains, &st.Active, &limits); err != nil {
			return gone(err)
		}
		st.Domains, st.Limits = json.RawMessage(domains), json.RawMessage(limits)
		v = st
	case EntityKey:
		k, err := scanKey(tx.QueryRowContext(ctx, keyColumns+` WHERE id = $1`, id), fromMillis(at))
		if err != nil {
			return gone(err)
		}
		v = struct {
			ID        string     `json:"id"`
			Site      string     `json:"site"`
			Mode      Mode       `json:"mode"`
			Name      string     `json:"name"`
			Prefix    string     `json:"prefix"`
			ExpiresAt *time.Time `json:"expires_at,omitempty"`
			RevokedAt *time.Time `json:"revoked_at,omitempty"`
			Entitlements
		}{k.ID, k.SiteID, k.Mode, k.Name, k.Prefix, k.ExpiresAt, k.RevokedAt, k.Entitlements}
	default:
		v = map[string]string{"key_id": id}
	}
	b, err := json.Marshal(v)
	return sql.NullString{String: string(b), Valid: true}, err
}

// gone is "no summary" for a row that does not exist (after a delete).
func gone(err error) (sql.NullString, error) {
	if err == sql.ErrNoRows {
		return sql.NullString{}, nil
	}
	return sql.NullString{}, err
}

// AuditEntry is one audited change.
type AuditEntry struct {
	Seq    int64           `json:"seq"`
	At     time.Time       `json:"at"`
	Actor  string          `json:"actor"`
	Action string          `json:"action"`
	Entity Entity          `json:"entity"`
	Target string          `json:"target"`
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
}

// MaxAuditPage bounds one page of the audit trail.
const MaxAuditPage = 1000

// Audit reads the trail in order, oldest first: entries after seq after,
// for target if given (an entity id), at most limit (default 100).
func (s *Store) Audit(ctx context.Context, target string, after int64, limit int) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	if limit > MaxAuditPage || after < 0 || len(target) > 256 {
		return nil, fmt.Errorf("keystore: audit: %w: limit is at most %d, after is not negative, target at most 256 bytes", ErrInvalid, MaxAuditPage)
	}
	q := `SELECT seq, at, actor, action, entity, target, before, after FROM audit WHERE seq > $1`
	args := []any{after}
	if target != "" {
		q += ` AND target = $2`
		args = append(args, target)
	}
	q += fmt.Sprintf(` ORDER BY seq LIMIT %d`, limit)
	rows, err := s.db.QueryContext(ctx, q, args...)
	return collect(rows, err, "audit", scanAudit)
}

func scanAudit(r rowScanner) (AuditEntry, error) {
	var e AuditEntry
	var at int64
	var entity string
	var before, afterJSON sql.NullString
	err := r.Scan(&e.Seq, &at, &e.Actor, &e.Action, &entity, &e.Target, &before, &afterJSON)
	e.At, e.Entity = fromMillis(at), Entity(entity)
	e.Before, e.After = rawOrNull(before), rawOrNull(afterJSON)
	return e, err
}

func rawOrNull(s sql.NullString) json.RawMessage {
	if !s.Valid || strings.TrimSpace(s.String) == "" {
		return json.RawMessage("null")
	}
	return json.RawMessage(s.String)
}
