package admin

import (
	"context"
	"net/http"
	"time"

	"github.com/keygate/keygate/keystore"
)

// The key endpoints but GET /admin/v1/keys/{id} (read.go).

// CreatedKey is a key as created, imported or rotated in: the one answer in
// which "key" (the secret) appears, and only for generated keys.
type CreatedKey struct {
	keystore.Key
	Secret  string   `json:"key,omitempty"`
	Revoked []string `json:"revoked,omitempty"`
}

type keyBody struct {
	Site      string     `json:"site"`
	Mode      string     `json:"mode"`
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expires_at"`
	// Key is the raw key, for import only.
	Key string `json:"key"`
	entitlementBody
}

func (b keyBody) spec() (keystore.KeySpec, error) {
	if b.Site == "" {
		return keystore.KeySpec{}, invalid(`"site" is required`)
	}
	m, err := keystore.ParseMode(b.Mode)
	if err != nil {
		return keystore.KeySpec{}, invalid(`"mode" must be "live" or "test"`)
	}
	return keystore.KeySpec{SiteID: b.Site, Mode: m, Name: b.Name, ExpiresAt: b.ExpiresAt}, nil
}

func (h *Handler) createKey(ctx context.Context, r *http.Request, b keyBody) (int, any, error) {
	if b.Key != "" {
		return 0, nil, invalid(`"key" is only accepted by /admin/v1/keys/import`)
	}
	spec, err := b.spec()
	if err != nil {
		return 0, nil, err
	}
	if spec.Entitlements, err = b.entitlements(h.vocabulary()); err != nil {
		return 0, nil, err
	}
	k, secret, err := h.Store.CreateKey(ctx, spec)
	return http.StatusCreated, CreatedKey{Key: k, Secret: secret.Reveal()}, err
}

// importKey stores a key issued by an older system; the answer never echoes it.
func (h *Handler) importKey(ctx context.Context, r *http.Request, b keyBody) (int, any, error) {
	spec, err := b.spec()
	if err != nil {
		return 0, nil, err
	}
	if b.Key == "" {
		return 0, nil, invalid(`"key" is required`)
	}
	if spec.Entitlements, err = b.entitlements(h.vocabulary()); err != nil {
		return 0, nil, err
	}
	k, err := h.Store.ImportKey(ctx, spec, b.Key)
	return http.StatusCreated, CreatedKey{Key: k}, err
}

// KeyPage is one page of a key listing; Next is the cursor of the next page
// ("" on the last one).
type KeyPage struct {
	Keys []keystore.Key `json:"keys"`
	Next string         `json:"next,omitempty"`
}

const defaultLimit, maxLimit = 100, 1000

func (h *Handler) listKeys(ctx context.Context, r *http.Request) (int, any, error) {
	site := r.URL.Query().Get("site")
	if site == "" {
		return 0, nil, invalid(`query parameter "site" is required`)
	}
	return paged(r, func(after string, limit int) ([]keystore.Key, error) { return h.Store.Keys(ctx, site, after, limit) },
		func(k keystore.Key) string { return k.ID },
		func(list []keystore.Key, next string) any { return KeyPage{Keys: list, Next: next} })
}

func (h *Handler) revokeKey(ctx context.Context, r *http.Request) (int, any, error) {
	var none struct{}
	if err := decode(r, &none, true); err != nil {
		return 0, nil, err
	}
	k, err := h.Store.RevokeKey(ctx, r.PathValue("id"))
	return http.StatusOK, k, err
}

type rotateBody struct {
	Mode  string `json:"mode"`
	Name  string `json:"name"`
	Grace string `json:"grace"` // a Go duration ("24h"); old keys work until now+grace
}

func (h *Handler) rotateKey(ctx context.Context, r *http.Request) (int, any, error) {
	b := rotateBody{Mode: string(keystore.ModeLive)}
	if err := decode(r, &b, true); err != nil {
		return 0, nil, err
	}
	spec, revoke, err := Rotation(r.PathValue("id"), b.Mode, b.Name)
	if err != nil {
		return 0, nil, err
	}
	var grace time.Duration
	if b.Grace != "" {
		if grace, err = time.ParseDuration(b.Grace); err != nil {
			return 0, nil, invalid(`"grace" must be a duration such as "24h"`)
		}
	}
	k, secret, revoked, err := h.Store.RotateSiteKeys(ctx, spec, revoke, grace)
	return http.StatusCreated, CreatedKey{Key: k, Secret: secret.Reveal(), Revoked: revoked}, err
}
