// Package customer is the account-scoped key API that a platform's
// customers reach from its dashboard (DESIGN.md, "Customer API"): list,
// create, revoke and rotate their own keys and read their usage, each
// request authorized by the dashboard's session token (package session),
// never by the operator's admin token.
//
// The account boundary is the whole point: a session of account A gets the
// same 404 for B's key or site as for one that does not exist, after the
// same single ownership query, which returns no row for either. Mutations
// are rate-limited per account and need a session that may write
// (session.Role). Credentials are only ever
// "Authorization: Bearer <session token>"; cookies are ignored, so there is
// no CSRF surface, and CORS is off unless origins are configured.
package customer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/internal/ascii"
	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policies"
	"github.com/keygate/keygate/session"
)

// DefaultPrefix is where the API is mounted unless configured.
const DefaultPrefix = "/v1"

// Verifier checks a session token.
type Verifier interface {
	Verify(ctx context.Context, raw string) (session.Session, error)
}

// Limiter charges the per-account mutation rate.
type Limiter interface {
	Charge(ctx context.Context, now time.Time, counters []limits.Counter) (limits.Outcome, error)
}

// Handler serves the customer API. Store, Sessions, Limits and Log are
// required.
type Handler struct {
	Store    *keystore.Store
	Sessions Verifier
	Limits   Limiter
	// Cache, when set, is this replica's key cache: revocations are applied
	// to it at once instead of at the follower's next poll (other replicas
	// learn them from the change log).
	Cache keystore.Invalidator
	// Policy is the running policy, whose data gives the quota in force
	// for usage that was never charged (nil: none shown).
	Policy *policies.Engine
	// Prefix is the path the routes live under (default DefaultPrefix).
	Prefix string
	// Origins are the browser origins allowed by CORS (none: CORS off).
	Origins []string
	// WritesPerMinute bounds each account's mutations (default 30, in
	// bursts of up to 10).
	WritesPerMinute int64
	// Timeout bounds each request's store work (default 10 s).
	Timeout time.Duration
	Log     *slog.Logger
	Now     func() time.Time
}

// ValidatePrefix checks a --customer-api-prefix: a clean absolute path
// that does not shadow keygate's own HTTP endpoints.
func ValidatePrefix(p string) error {
	if p == "" || p == "/" {
		return nil
	}
	if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || len(p) > 64 {
		return fmt.Errorf("customer API prefix %q: want an absolute path without a trailing slash, e.g. /v1", p)
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/-_.", r)) {
			return fmt.Errorf("customer API prefix %q: only letters, digits and / - _ . are allowed", p)
		}
	}
	if strings.Contains(p, "//") || strings.Contains(p, "/.") {
		return fmt.Errorf("customer API prefix %q is not a clean path", p)
	}
	for _, taken := range []string{extauthz.EnvoyPrefix, extauthz.NginxPath, extauthz.ForwardAuthPath, "/auth", "/health", "/metrics"} {
		if p == taken || strings.HasPrefix(p, taken+"/") {
			return fmt.Errorf("customer API prefix %q would shadow keygate's %s endpoint", p, taken)
		}
	}
	return nil
}

// Route is one route of the API, its path relative to the prefix.
type Route struct{ Method, Path string }

// Routes are the API's routes, in the order Register mounts them.
func Routes() []Route {
	return []Route{
		{"GET", "/api-keys"},
		{"POST", "/api-keys"},
		{"POST", "/api-keys/{id}/revoke"},
		{"POST", "/sites/{site}/rotate-key"},
		{"GET", "/usage"},
	}
}

// Register adds the routes to mux (keygate's --http-addr mux).
func (h *Handler) Register(mux *http.ServeMux) {
	p := strings.TrimSuffix(h.Prefix, "/")
	if h.Prefix == "" {
		p = DefaultPrefix
	}
	handlers := map[Route]http.Handler{
		{"GET", "/api-keys"}:                 h.serve(false, h.listKeys),
		{"POST", "/api-keys"}:                h.serve(true, h.createKey),
		{"POST", "/api-keys/{id}/revoke"}:    h.serve(true, h.revokeKey),
		{"POST", "/sites/{site}/rotate-key"}: h.serve(true, h.rotateKey),
		{"GET", "/usage"}:                    h.serve(false, h.usage),
	}
	preflight := map[string]bool{}
	for _, rt := range Routes() {
		mux.Handle(rt.Method+" "+p+rt.Path, handlers[rt])
		if !preflight[rt.Path] {
			preflight[rt.Path] = true
			mux.HandleFunc("OPTIONS "+p+rt.Path, h.preflight)
		}
	}
}

// endpoint does one route's work for an authenticated session and returns
// the status and JSON answer, or an error that problem maps.
type endpoint func(ctx context.Context, s session.Session, r *http.Request) (int, any, error)

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// serve authenticates, authorizes, rate-limits writes and runs fn.
func (h *Handler) serve(write bool, fn endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.cors(w, r)
		timeout := h.Timeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		s, err := h.authenticate(ctx, r)
		if err == nil && write {
			err = h.mayWrite(ctx, s)
		}
		status, body := 0, any(nil)
		if err == nil {
			ctx = keystore.WithActor(ctx, s.Actor()) // the audit trail names session:<sub>
			status, body, err = fn(ctx, s, r)
		}
		if err != nil {
			h.fail(w, r, s, err)
			return
		}
		if write {
			h.Log.Info("customer api write", "actor", s.Actor(), "account", s.Account, "method", r.Method, "path", r.URL.Path, "status", status)
		}
		admin.WriteJSON(w, status, body)
	})
}

// authenticate verifies the one bearer token and that its account exists.
// A bad token, a missing account claim and an unknown account all answer
// the same 401.
func (h *Handler) authenticate(ctx context.Context, r *http.Request) (session.Session, error) {
	raw, ok := bearer(r.Header.Values("Authorization"))
	if !ok {
		return session.Session{}, errNoSession
	}
	s, err := h.Sessions.Verify(ctx, raw)
	if err != nil {
		return session.Session{}, err
	}
	if _, err := h.Store.Account(ctx, s.Account); err != nil {
		if errors.Is(err, keystore.ErrNotFound) {
			return session.Session{}, fmt.Errorf("%w: account of the session does not exist", session.ErrInvalid)
		}
		return session.Session{}, err
	}
	return s, nil
}

// bearer reads exactly one "Authorization: Bearer <token>" header.
func bearer(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(values[0], " ")
	if !ok || !ascii.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t,") {
		return "", false
	}
	return tok, true
}

// mayWrite refuses read-only sessions and charges the account's write rate.
func (h *Handler) mayWrite(ctx context.Context, s session.Session) error {
	if !s.CanWrite() {
		return errReadOnly
	}
	rate := h.WritesPerMinute
	if rate <= 0 {
		rate = 30
	}
	out, err := h.Limits.Charge(ctx, h.now(), []limits.Counter{{Kind: limits.Rate, Key: "customer-api:" + s.Account,
		Limit: rate, Burst: min(rate, 10), Period: time.Minute, Cost: 1}})
	if err != nil {
		return fmt.Errorf("%w: %w", keystore.ErrUnavailable, err)
	}
	if out.Denied != nil {
		return &rateLimited{retryAfter: out.Denied.RetryAfter}
	}
	return nil
}

// cors answers allowed browser origins; without configured origins no CORS
// header is ever sent, so browsers refuse cross-origin calls.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	if len(h.Origins) == 0 {
		return false
	}
	// The answer depends on Origin whether or not it is allowed: caches
	// must not hand one origin's answer to another.
	w.Header().Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if origin == "" || !slices.Contains(h.Origins, origin) {
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
	return true
}

func (h *Handler) preflight(w http.ResponseWriter, r *http.Request) {
	if !h.cors(w, r) {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	w.Header().Set("Access-Control-Allow-Methods", "GET, POST")
	w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	w.Header().Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

var (
	errNoSession = fmt.Errorf("%w: no bearer session token", session.ErrInvalid)
	errReadOnly  = errors.New("customer: read-only session")
	// errNotFound is every missing or foreign object: one answer for both.
	errNotFound = errors.New("customer: not found")
)

type rateLimited struct{ retryAfter time.Duration }

func (e *rateLimited) Error() string { return "customer: rate limited" }

// badRequest is a client mistake whose message is safe to show.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func invalid(format string, args ...any) error { return &badRequest{msg: fmt.Sprintf(format, args...)} }

// fail answers an error as Check answers a denial: the running policy's
// deny for it (denial) with extauthz.DenyHeaders (content-type, no-store,
// WWW-Authenticate on 401, the decision's headers such as Retry-After).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, s session.Session, err error) {
	d := h.denial(err, r.Header.Get("X-Request-Id"))
	if d.Status >= 500 {
		h.Log.Error("customer api failed", "method", r.Method, "path", r.URL.Path, "account", s.Account, "err", err)
	} else if d.Status == http.StatusUnauthorized {
		// Why, for the operator; never the token.
		h.Log.Debug("customer api refused a session", "path", r.URL.Path, "err", err)
	}
	for k, v := range extauthz.DenyHeaders(d, d.Status == http.StatusUnauthorized && r.Header.Get("Authorization") != "") {
		w.Header().Set(k, v)
	}
	w.WriteHeader(d.Status)
	_, _ = w.Write(extauthz.DenyBody(d))
}

// forget drops revoked keys from this replica's cache.
func (h *Handler) forget(ids ...string) {
	if h.Cache == nil {
		return
	}
	for _, id := range ids {
		h.Cache.Invalidate(keystore.EntityKey, id)
	}
}
