package customer

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/session"
)

const (
	// maxID bounds ids and site names taken from paths and queries.
	maxID = 128
	// maxListed bounds a listing across every site of an account.
	maxListed = 1000
)

// KeyList is the answer of GET {prefix}/api-keys. Keys never carry a
// secret. Next is the cursor (?after=) of the next page of a one-site
// listing; Truncated says an account-wide listing stopped at 1000 keys
// (ask per site for the rest).
type KeyList struct {
	Keys      []keystore.Key `json:"keys"`
	Next      string         `json:"next,omitempty"`
	Truncated bool           `json:"truncated,omitempty"`
}

// CreatedKey is a key as created or rotated in: the one answer that shows
// "key", once.
type CreatedKey = admin.CreatedKey

// ownSite returns nil if the site belongs to the session's account, and
// ErrNotFound for a missing and a foreign site alike, after the same one
// query that returns no row for either (keystore.AccountOwnsSite).
func (h *Handler) ownSite(ctx context.Context, s session.Session, id string) error {
	if id == "" || len(id) > maxID {
		return errNotFound
	}
	return h.Store.AccountOwnsSite(ctx, s.Account, id)
}

func (h *Handler) listKeys(ctx context.Context, s session.Session, r *http.Request) (int, any, error) {
	q := r.URL.Query()
	limit := maxListed
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListed {
			return 0, nil, invalid(`"limit" must be between 1 and %d`, maxListed)
		}
		limit = n
	}
	after := q.Get("after")
	if len(after) > maxID {
		return 0, nil, invalid(`"after" is not a key id`)
	}
	if site := q.Get("site"); site != "" {
		if err := h.ownSite(ctx, s, site); err != nil {
			return 0, nil, err
		}
		keys, err := h.Store.Keys(ctx, site, after, limit)
		if err != nil {
			return 0, nil, err
		}
		out := KeyList{Keys: nonNil(keys)}
		if len(keys) == limit {
			out.Next = keys[len(keys)-1].ID
		}
		return http.StatusOK, out, nil
	}
	if after != "" {
		return 0, nil, invalid(`"after" pages one site's keys: give "site" too`)
	}
	out := KeyList{Keys: []keystore.Key{}}
	err := h.eachSite(ctx, s, func(site keystore.Site) (bool, error) {
		keys, err := h.Store.Keys(ctx, site.ID, "", limit-len(out.Keys)+1)
		if err != nil {
			return false, err
		}
		out.Keys = append(out.Keys, keys...)
		if len(out.Keys) > limit {
			out.Keys, out.Truncated = out.Keys[:limit], true
			return false, nil
		}
		return true, nil
	})
	return http.StatusOK, out, err
}

// eachSite calls fn for every site of the session's account, in id order,
// until fn says stop.
func (h *Handler) eachSite(ctx context.Context, s session.Session, fn func(keystore.Site) (bool, error)) error {
	after := ""
	for {
		sites, err := h.Store.Sites(ctx, s.Account, after, maxListed)
		if err != nil {
			return err
		}
		for _, site := range sites {
			if more, err := fn(site); err != nil || !more {
				return err
			}
		}
		if len(sites) < maxListed {
			return nil
		}
		after = sites[len(sites)-1].ID
	}
}

func nonNil(keys []keystore.Key) []keystore.Key {
	if keys == nil {
		return []keystore.Key{}
	}
	return keys
}

type createBody struct {
	Site      string     `json:"site"`
	Mode      string     `json:"mode"`
	Name      string     `json:"name"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func (h *Handler) createKey(ctx context.Context, s session.Session, r *http.Request) (int, any, error) {
	var b createBody
	if err := admin.Decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if b.Site == "" {
		return 0, nil, invalid(`"site" is required`)
	}
	mode, err := keystore.ParseMode(b.Mode)
	if err != nil {
		return 0, nil, invalid(`"mode" must be "live" or "test"`)
	}
	if err := h.ownSite(ctx, s, b.Site); err != nil {
		return 0, nil, err
	}
	k, secret, err := h.Store.CreateKey(ctx, keystore.KeySpec{SiteID: b.Site, Mode: mode, Name: b.Name, ExpiresAt: b.ExpiresAt})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, CreatedKey{Key: k, Secret: secret.Reveal()}, nil
}

// revokeKey revokes one of the account's keys. Whether the account owns
// the key is one query that returns no row for a foreign id as for a
// missing one (keystore.AccountOwnsKey), so both cost the same.
func (h *Handler) revokeKey(ctx context.Context, s session.Session, r *http.Request) (int, any, error) {
	var none struct{}
	if err := admin.Decode(r, &none, true); err != nil {
		return 0, nil, err
	}
	id := r.PathValue("id")
	if id == "" || len(id) > maxID {
		return 0, nil, errNotFound
	}
	if err := h.Store.AccountOwnsKey(ctx, s.Account, id); err != nil {
		return 0, nil, err
	}
	k, err := h.Store.RevokeKey(ctx, id)
	if err != nil {
		return 0, nil, err
	}
	h.forget(id)
	return http.StatusOK, k, nil
}

type rotateBody struct {
	// Mode is the new key's mode and which keys are revoked: "all" (the
	// default: every active key, new key live), "live" or "test".
	Mode string `json:"mode"`
	Name string `json:"name"`
}

// rotateKey revokes the site's active keys at once (no grace: a customer
// rotates because a key leaked) and returns the new key.
func (h *Handler) rotateKey(ctx context.Context, s session.Session, r *http.Request) (int, any, error) {
	b := rotateBody{Mode: admin.RotateAll}
	if err := admin.Decode(r, &b, true); err != nil {
		return 0, nil, err
	}
	site := r.PathValue("site")
	spec, revoke, err := admin.Rotation(site, b.Mode, b.Name)
	if err != nil {
		return 0, nil, invalid(`"mode" must be "all", "live" or "test"`)
	}
	if err := h.ownSite(ctx, s, site); err != nil {
		return 0, nil, err
	}
	k, secret, revoked, err := h.Store.RotateSiteKeys(ctx, spec, revoke, 0)
	if err != nil {
		return 0, nil, err
	}
	h.forget(revoked...)
	return http.StatusCreated, CreatedKey{Key: k, Secret: secret.Reveal(), Revoked: revoked}, nil
}

// UsageList is the answer of GET {prefix}/usage: one entry per site.
type UsageList struct {
	Usage []admin.SiteUsage `json:"usage"`
}

func (h *Handler) usage(ctx context.Context, s session.Session, r *http.Request) (int, any, error) {
	at, err := admin.UsageMonth(r, h.now())
	if err != nil {
		return 0, nil, err
	}
	out := UsageList{Usage: []admin.SiteUsage{}}
	// One policy names the counters and gives the quota in force; without
	// one, the built-in policy's counter names.
	var names admin.CounterNames
	var pol *policies.Policy
	if h.Policy != nil {
		pol = h.Policy.Current()
		names = pol
	}
	add := func(site keystore.Site) (bool, error) {
		u, err := admin.ReadSiteUsage(ctx, h.Store, names, site.ID, at)
		if err == nil && pol != nil {
			err = admin.EffectiveQuota(ctx, h.Store, pol, &u)
		}
		out.Usage = append(out.Usage, u)
		return len(out.Usage) < maxListed, err
	}
	if site := r.URL.Query().Get("site"); site != "" {
		if err := h.ownSite(ctx, s, site); err != nil {
			return 0, nil, err
		}
		_, err := add(keystore.Site{ID: site, AccountID: s.Account})
		return http.StatusOK, out, err
	}
	err = h.eachSite(ctx, s, add)
	return http.StatusOK, out, err
}
