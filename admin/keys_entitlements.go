package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// Per-key entitlements (issue 15): the fields of POST /admin/v1/keys and
// PATCH /admin/v1/keys/{id}, and POST /admin/v1/keys/{id}/roll.

// entitlementBody are the entitlement fields of a new key.
type entitlementBody struct {
	Scopes       []string          `json:"scopes"`
	AllowedCIDRs []string          `json:"allowed_cidrs"`
	Meta         map[string]string `json:"meta"`
	Limits       keystore.Limits   `json:"limits"`
	Remaining    *int64            `json:"remaining"`
	Refill       *keystore.Refill  `json:"refill"`
}

func (b entitlementBody) entitlements(v Vocabulary) (keystore.Entitlements, error) {
	if err := v.CheckLimits(b.Limits); err != nil {
		return keystore.Entitlements{}, err
	}
	e := keystore.Entitlements{Scopes: b.Scopes, AllowedCIDRs: b.AllowedCIDRs, Meta: b.Meta, Limits: b.Limits,
		Remaining: b.Remaining, Refill: b.Refill}
	return e, entitlementError(e.Validate())
}

// entitlementFields are the fields a store validation message starts with.
var entitlementFields = []string{"scopes", "allowed_cidrs", "meta", "limits", "remaining", "refill", "name"}

// entitlementError turns the store's ErrInvalid about one entitlement into
// a 400 that names the field.
func entitlementError(err error) error {
	if err == nil || !errors.Is(err, keystore.ErrInvalid) {
		return err
	}
	msg := trim(err)
	if _, rest, ok := strings.Cut(msg, "invalid: "); ok {
		msg = rest
	}
	for _, f := range entitlementFields {
		if strings.HasPrefix(msg, f+":") {
			return invalidField(f, "%s", msg)
		}
	}
	return err
}

// keyPatchBody is a JSON merge patch (RFC 7396) of a key: a field left out
// is kept, null removes it; "meta" and "limits" merge by entry (an entry
// set to null is removed).
type keyPatchBody struct {
	Name         json.RawMessage `json:"name"`
	Scopes       json.RawMessage `json:"scopes"`
	AllowedCIDRs json.RawMessage `json:"allowed_cidrs"`
	Meta         json.RawMessage `json:"meta"`
	Limits       json.RawMessage `json:"limits"`
	Remaining    json.RawMessage `json:"remaining"`
	Refill       json.RawMessage `json:"refill"`
}

func isNull(raw json.RawMessage) bool { return strings.TrimSpace(string(raw)) == "null" }

// field decodes one present, non-null member into v.
func field(name string, raw json.RawMessage, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return invalidField(name, "%q must be %s, not %s", name, jsonType(te.Type), te.Value)
		}
		return invalidField(name, "%q: %v", name, err)
	}
	return nil
}

func (b keyPatchBody) patch(v Vocabulary) (keystore.KeyPatch, error) {
	var p keystore.KeyPatch
	if b.Name != nil && !isNull(b.Name) {
		p.Name = new(string)
		if err := field("name", b.Name, p.Name); err != nil {
			return p, err
		}
	}
	for _, l := range []struct {
		name string
		raw  json.RawMessage
		dst  **[]string
	}{{"scopes", b.Scopes, &p.Scopes}, {"allowed_cidrs", b.AllowedCIDRs, &p.AllowedCIDRs}} {
		if l.raw == nil {
			continue
		}
		list := []string{}
		if !isNull(l.raw) {
			if err := field(l.name, l.raw, &list); err != nil {
				return p, err
			}
		}
		*l.dst = &list
	}
	if b.Meta != nil {
		if p.ClearMeta = isNull(b.Meta); !p.ClearMeta {
			if err := field("meta", b.Meta, &p.Meta); err != nil {
				return p, err
			}
		}
	}
	if b.Limits != nil {
		if p.ClearLimits = isNull(b.Limits); !p.ClearLimits {
			if err := field("limits", b.Limits, &p.Limits); err != nil {
				return p, err
			}
			set := keystore.Limits{}
			for k, val := range p.Limits {
				if val != nil {
					set[k] = *val
				}
			}
			if err := v.CheckLimits(set); err != nil {
				return p, err
			}
		}
	}
	return p, b.patchUses(&p)
}

func (b keyPatchBody) patchUses(p *keystore.KeyPatch) error {
	if b.Remaining != nil {
		if p.ClearRemaining = isNull(b.Remaining); !p.ClearRemaining {
			if err := field("remaining", b.Remaining, &p.Remaining); err != nil {
				return err
			}
		}
	}
	if b.Refill != nil {
		if p.ClearRefill = isNull(b.Refill); !p.ClearRefill {
			if err := field("refill", b.Refill, &p.Refill); err != nil {
				return err
			}
		}
	}
	if p.Empty() {
		return invalid("nothing to change: send name, scopes, allowed_cidrs, meta, limits, remaining or refill")
	}
	return nil
}

func (h *Handler) updateKey(ctx context.Context, r *http.Request) (int, any, error) {
	var b keyPatchBody
	if err := decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	p, err := b.patch(h.vocabulary())
	if err != nil {
		return 0, nil, err
	}
	k, err := h.Store.UpdateKey(ctx, r.PathValue("id"), p)
	return http.StatusOK, k, entitlementError(err)
}

type rollBody struct {
	Grace *string `json:"grace"` // a Go duration ("24h"); default 24h
}

// RolledKey is the answer of a roll: the new key with its secret (shown
// once), the old key's id and when it stops working.
type RolledKey struct {
	keystore.Key
	Secret       string     `json:"key"`
	OldKeyID     string     `json:"old_key_id"`
	OldExpiresAt *time.Time `json:"old_expires_at"`
}

// DefaultRollGrace is how long a rolled key keeps working when the request
// names no grace.
const DefaultRollGrace = 24 * time.Hour

func (h *Handler) rollKey(ctx context.Context, r *http.Request) (int, any, error) {
	var b rollBody
	if err := decode(r, &b, true); err != nil {
		return 0, nil, err
	}
	grace := DefaultRollGrace
	if b.Grace != nil {
		g, err := time.ParseDuration(*b.Grace)
		if err != nil || g < 0 || g > keystore.MaxGrace {
			return 0, nil, invalidField("grace", `"grace" must be a duration from "0s" to %q, such as "24h"`, keystore.MaxGrace.String())
		}
		grace = g
	}
	nu, secret, old, err := h.Store.RollKey(ctx, r.PathValue("id"), grace)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, RolledKey{Key: nu, Secret: secret.Reveal(), OldKeyID: old.ID, OldExpiresAt: old.ExpiresAt}, nil
}
