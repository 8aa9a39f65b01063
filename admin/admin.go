// Package admin is keygate's admin HTTP API (DESIGN.md, "Admin API"): JSON
// over HTTP for accounts, sites and keys, guarded by one bearer token. It is
// a thin translation of requests into keystore calls; every write goes
// through the store's change log, so every replica sees it.
package admin

import (
	"log/slog"
	"net/http"
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

// register adds every admin route: the one table of the admin API (its
// openapi.json documents each row). Rows are grouped by how the endpoint
// is called: with the request's JSON body decoded (withBody), with the
// request only, and per entity (limits).
func (h *Handler) register(mux router) {
	mux.HandleFunc("POST /admin/v1/accounts", h.handle(withBody(h.createAccount)))
	mux.HandleFunc("PATCH /admin/v1/accounts/{id}", h.handle(withBody(h.updateAccount)))
	mux.HandleFunc("POST /admin/v1/sites", h.handle(withBody(h.createSite)))
	mux.HandleFunc("PATCH /admin/v1/sites/{id}", h.handle(withBody(h.updateSite)))
	mux.HandleFunc("POST /admin/v1/keys", h.handle(withBody(h.createKey)))
	mux.HandleFunc("POST /admin/v1/keys/import", h.handle(withBody(h.importKey)))
	mux.HandleFunc("POST /admin/v1/webhooks", h.handle(withBody(h.createWebhook)))
	mux.HandleFunc("PATCH /admin/v1/webhooks/{id}", h.handle(withBody(h.updateWebhook)))
	mux.HandleFunc("GET /admin/v1/accounts", h.handle(h.listAccounts))
	mux.HandleFunc("GET /admin/v1/accounts/{id}", h.handle(byID(h, (*keystore.Store).Account)))
	mux.HandleFunc("GET /admin/v1/sites", h.handle(h.listSites))
	mux.HandleFunc("GET /admin/v1/sites/{id}", h.handle(byID(h, (*keystore.Store).Site)))
	mux.HandleFunc("POST /admin/v1/sites/{id}/rotate-key", h.handle(h.rotateKey))
	mux.HandleFunc("GET /admin/v1/keys", h.handle(h.listKeys))
	mux.HandleFunc("GET /admin/v1/keys/{id}", h.handle(byID(h, (*keystore.Store).Key)))
	mux.HandleFunc("POST /admin/v1/keys/{id}/revoke", h.handle(h.revokeKey))
	mux.HandleFunc("PATCH /admin/v1/keys/{id}", h.handle(h.updateKey))
	mux.HandleFunc("POST /admin/v1/keys/{id}/roll", h.handle(h.rollKey))
	mux.HandleFunc("GET /admin/v1/audit", h.handle(h.audit))
	mux.HandleFunc("GET /admin/v1/sites/{id}/usage", h.handle(h.siteUsage))
	mux.HandleFunc("GET /admin/v1/webhooks", h.handle(h.listWebhooks))
	mux.HandleFunc("GET /admin/v1/webhooks/{id}", h.handle(h.getWebhook))
	mux.HandleFunc("DELETE /admin/v1/webhooks/{id}", h.handle(h.deleteWebhook))
	mux.HandleFunc("GET /admin/v1/webhooks/{id}/deliveries", h.handle(h.listDeliveries))
	mux.HandleFunc("POST /admin/v1/webhooks/{id}/deliveries/{delivery}/retry", h.handle(h.retryDelivery))
	mux.HandleFunc("GET /admin/v1/openapi.json", h.openAPI)
	mux.HandleFunc("GET /admin/v1/accounts/{id}/limits", h.handle(h.limitsOf(keystore.EntityAccount)))
	mux.HandleFunc("PUT /admin/v1/accounts/{id}/limits", h.handle(h.setLimits(keystore.EntityAccount)))
	mux.HandleFunc("GET /admin/v1/sites/{id}/limits", h.handle(h.limitsOf(keystore.EntitySite)))
	mux.HandleFunc("PUT /admin/v1/sites/{id}/limits", h.handle(h.setLimits(keystore.EntitySite)))
}
