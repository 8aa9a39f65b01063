// Package admin is keygate's admin HTTP API (DESIGN.md, "Admin API"): JSON
// over HTTP for accounts, sites and keys, guarded by one bearer token. It is
// a thin translation of requests into keystore calls; every write goes
// through the store's change log, so every replica sees it.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/webhooks"
)

// maxBody bounds every request body; the largest legitimate one (a site with
// 100 domains) is far smaller.
const maxBody = 64 << 10

// Handler serves /admin/v1/…. Token or Tokens must be set.
type Handler struct {
	Store *keystore.Store
	// Token is the admin token, named "admin" in the audit trail.
	Token string
	// Tokens are more admin tokens by name; a request's writes are
	// audited as "admin:<name>".
	Tokens map[string]string
	Log    *slog.Logger
	// Timeout bounds each store call (default 10 s).
	Timeout time.Duration
	// Policy is the running policy, whose data says which plans and limit
	// names writes may use (nil: any).
	Policy *policies.Engine
	// Webhooks says where webhook endpoints may point (admin/webhooks.go).
	Webhooks webhooks.Destinations
}

// Error is the JSON body of every failure.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the request field at fault, when one is.
	Field string `json:"field,omitempty"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Error codes of the admin API.
const (
	CodeInvalid      = "INVALID_REQUEST"
	CodeUnauthorized = "UNAUTHORIZED"
	CodeNotFound     = "NOT_FOUND"
	CodeConflict     = "CONFLICT"
	CodeUnavailable  = "STORE_UNAVAILABLE"
	CodeInternal     = "INTERNAL"
)

// ServeHTTP authenticates, then routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := h.tokenName(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="keygate-admin"`)
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "missing or wrong admin token")
		return
	}
	r = r.WithContext(keystore.WithActor(r.Context(), "admin:"+name))
	h.routes().ServeHTTP(w, r)
}

func (h *Handler) routes() *http.ServeMux {
	mux := http.NewServeMux()
	h.register(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such admin endpoint: "+r.Method+" "+r.URL.Path+" (see GET /admin/v1/openapi.json)")
	})
	return mux
}

// router is where routes are registered: the ServeMux, or the recorder
// behind Routes.
type router interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// register adds every admin route.
func (h *Handler) register(mux router) {
	mux.HandleFunc("POST /admin/v1/accounts", h.handle(h.createAccount))
	mux.HandleFunc("PATCH /admin/v1/accounts/{id}", h.handle(h.updateAccount))
	mux.HandleFunc("POST /admin/v1/sites", h.handle(h.createSite))
	mux.HandleFunc("PATCH /admin/v1/sites/{id}", h.handle(h.updateSite))
	mux.HandleFunc("POST /admin/v1/sites/{id}/rotate-key", h.handle(h.rotateKey))
	mux.HandleFunc("POST /admin/v1/keys", h.handle(h.createKey))
	mux.HandleFunc("POST /admin/v1/keys/import", h.handle(h.importKey))
	mux.HandleFunc("GET /admin/v1/keys", h.handle(h.listKeys))
	mux.HandleFunc("POST /admin/v1/keys/{id}/revoke", h.handle(h.revokeKey))
	mux.HandleFunc("GET /admin/v1/audit", h.handle(h.audit))
	h.limitRoutes(mux)
	h.readRoutes(mux)
	h.webhookRoutes(mux)
	h.entitlementRoutes(mux)
}

// endpoint does the work of one route and returns the status and the JSON
// answer, or an error that errorStatus maps.
type endpoint func(ctx context.Context, r *http.Request) (int, any, error)

func (h *Handler) handle(fn endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		timeout := h.Timeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		status, body, err := fn(ctx, r)
		if err != nil {
			status, code, msg := errorStatus(err)
			if status == http.StatusNotFound {
				msg = notFoundMessage(r, msg)
			}
			if status >= 500 {
				h.Log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeJSON(w, status, Error{Code: code, Message: msg, Field: fieldOf(err)})
			return
		}
		h.Log.Info("admin", "method", r.Method, "path", r.URL.Path, "status", status)
		writeJSON(w, status, body)
	}
}

// errorStatus maps keystore errors to the API's status and code. Store
// messages carry no secrets (keys are only ever digests there).
func errorStatus(err error) (int, string, string) {
	var e *Error
	var fe *FieldError
	switch {
	case errors.As(err, &e):
		return http.StatusBadRequest, e.Code, e.Message
	case errors.As(err, &fe):
		return http.StatusBadRequest, CodeInvalid, fe.Error()
	case errors.Is(err, keystore.ErrInvalid):
		return http.StatusBadRequest, CodeInvalid, trim(err)
	case errors.Is(err, keystore.ErrNotFound):
		return http.StatusNotFound, CodeNotFound, trim(err)
	case errors.Is(err, keystore.ErrConflict):
		return http.StatusConflict, CodeConflict, trim(err)
	case errors.Is(err, keystore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, CodeUnavailable, "the store is unreachable; retry later"
	case errors.Is(err, keystore.ErrNoSealSecret):
		return http.StatusServiceUnavailable, CodeUnavailable,
			"no secret outside the database to encrypt signing secrets: set KEYGATE_TOKEN_SECRET (or KEYGATE_PEPPER) on the server"
	}
	return http.StatusInternalServerError, CodeInternal, "internal error"
}

// trim drops the "keystore: " markers that help logs but not API users.
func trim(err error) string { return strings.ReplaceAll(err.Error(), "keystore: ", "") }

func invalid(format string, args ...any) error {
	return &Error{Code: CodeInvalid, Message: fmt.Sprintf(format, args...)}
}

// decode reads one bounded JSON object, rejecting unknown fields and
// trailing data. An empty body is allowed only when optional.
func decode(r *http.Request, v any, optional bool) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return invalid("reading the body: %v", err)
	}
	if len(body) > maxBody {
		return invalid("body larger than %d bytes", maxBody)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if optional {
			return nil
		}
		return invalid("a JSON body is required")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return invalid("malformed JSON: data after the object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // answers may hold a key
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, Error{Code: code, Message: msg})
}

type accountBody struct {
	ID     *string `json:"id"`
	Plan   *string `json:"plan"`
	Status *string `json:"status"`
}

func (h *Handler) createAccount(ctx context.Context, r *http.Request) (int, any, error) {
	var b accountBody
	if err := decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if b.ID == nil || b.Plan == nil {
		return 0, nil, invalid(`"id" and "plan" are required`)
	}
	if err := h.checkAccount(b); err != nil {
		return 0, nil, err
	}
	a := keystore.Account{ID: *b.ID, Plan: *b.Plan}
	if b.Status != nil {
		a.Status = keystore.AccountStatus(*b.Status)
	}
	a, err := h.Store.CreateAccount(ctx, a)
	return http.StatusCreated, a, err
}

func (h *Handler) updateAccount(ctx context.Context, r *http.Request) (int, any, error) {
	var b accountBody
	if err := decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if b.ID != nil && *b.ID != r.PathValue("id") {
		return 0, nil, invalid(`"id" cannot change`)
	}
	if err := h.checkAccount(b); err != nil {
		return 0, nil, err
	}
	var u keystore.AccountUpdate
	u.Plan = b.Plan
	if b.Status != nil {
		s := keystore.AccountStatus(*b.Status)
		u.Status = &s
	}
	a, err := h.Store.UpdateAccount(ctx, r.PathValue("id"), u)
	return http.StatusOK, a, err
}

type siteBody struct {
	ID      *string   `json:"id"`
	Account *string   `json:"account"`
	Domains *[]string `json:"domains"`
	Active  *bool     `json:"active"`
}

func (h *Handler) createSite(ctx context.Context, r *http.Request) (int, any, error) {
	var b siteBody
	if err := decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if b.ID == nil || b.Account == nil {
		return 0, nil, invalid(`"id" and "account" are required`)
	}
	s := keystore.Site{ID: *b.ID, AccountID: *b.Account, Active: true}
	if b.Domains != nil {
		s.Domains = *b.Domains
	}
	if b.Active != nil {
		s.Active = *b.Active
	}
	s, err := h.Store.CreateSite(ctx, s)
	return http.StatusCreated, s, err
}

func (h *Handler) updateSite(ctx context.Context, r *http.Request) (int, any, error) {
	var b siteBody
	if err := decode(r, &b, false); err != nil {
		return 0, nil, err
	}
	if b.ID != nil && *b.ID != r.PathValue("id") || b.Account != nil {
		return 0, nil, invalid(`"id" and "account" cannot change`)
	}
	s, err := h.Store.UpdateSite(ctx, r.PathValue("id"), keystore.SiteUpdate{Domains: b.Domains, Active: b.Active})
	return http.StatusOK, s, err
}

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

func (h *Handler) createKey(ctx context.Context, r *http.Request) (int, any, error) {
	var b keyBody
	if err := decode(r, &b, false); err != nil {
		return 0, nil, err
	}
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
func (h *Handler) importKey(ctx context.Context, r *http.Request) (int, any, error) {
	var b keyBody
	if err := decode(r, &b, false); err != nil {
		return 0, nil, err
	}
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
	q := r.URL.Query()
	site := q.Get("site")
	if site == "" {
		return 0, nil, invalid(`query parameter "site" is required`)
	}
	after, limit, err := pageQuery(r)
	if err != nil {
		return 0, nil, err
	}
	keys, err := h.Store.Keys(ctx, site, after, limit)
	if err != nil {
		return 0, nil, err
	}
	page := KeyPage{Keys: keys}
	if page.Keys == nil {
		page.Keys = []keystore.Key{}
	}
	page.Next = next(len(keys), limit, func() string { return keys[len(keys)-1].ID })
	return http.StatusOK, page, nil
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
