package admin

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// readRoutes adds the read side: listings with the same cursor pagination
// as GET /admin/v1/keys (?limit=1..1000&after=ID → {"<items>": […],
// "next": ID}) and single objects.
func (h *Handler) readRoutes(mux router) {
	mux.HandleFunc("GET /admin/v1/accounts", h.handle(h.listAccounts))
	mux.HandleFunc("GET /admin/v1/accounts/{id}", h.handle(h.getAccount))
	mux.HandleFunc("GET /admin/v1/sites", h.handle(h.listSites))
	mux.HandleFunc("GET /admin/v1/sites/{id}", h.handle(h.getSite))
	mux.HandleFunc("GET /admin/v1/keys/{id}", h.handle(h.getKey))
	mux.HandleFunc("GET /admin/v1/openapi.json", h.openAPI)
}

// AccountPage is one page of the account listing.
type AccountPage struct {
	Accounts []keystore.Account `json:"accounts"`
	Next     string             `json:"next,omitempty"`
}

// SitePage is one page of the site listing.
type SitePage struct {
	Sites []keystore.Site `json:"sites"`
	Next  string          `json:"next,omitempty"`
}

// pageQuery reads ?limit and ?after.
func pageQuery(r *http.Request) (after string, limit int, err error) {
	q := r.URL.Query()
	limit = defaultLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return "", 0, invalidField("limit", `"limit" must be between 1 and %d`, maxLimit)
		}
		limit = n
	}
	after = q.Get("after")
	if len(after) > 64 {
		return "", 0, invalidField("after", `"after" is not an id (at most 64 characters)`)
	}
	return after, limit, nil
}

// next is the cursor after a page of n items of at most limit.
func next(n, limit int, last func() string) string {
	if n == limit && n > 0 {
		return last()
	}
	return ""
}

func (h *Handler) listAccounts(ctx context.Context, r *http.Request) (int, any, error) {
	after, limit, err := pageQuery(r)
	if err != nil {
		return 0, nil, err
	}
	list, err := h.Store.Accounts(ctx, after, limit)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, AccountPage{Accounts: list, Next: next(len(list), limit, func() string { return list[len(list)-1].ID })}, nil
}

func (h *Handler) getAccount(ctx context.Context, r *http.Request) (int, any, error) {
	a, err := h.Store.Account(ctx, r.PathValue("id"))
	return http.StatusOK, a, err
}

func (h *Handler) listSites(ctx context.Context, r *http.Request) (int, any, error) {
	after, limit, err := pageQuery(r)
	if err != nil {
		return 0, nil, err
	}
	list, err := h.Store.Sites(ctx, r.URL.Query().Get("account"), after, limit)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, SitePage{Sites: list, Next: next(len(list), limit, func() string { return list[len(list)-1].ID })}, nil
}

func (h *Handler) getSite(ctx context.Context, r *http.Request) (int, any, error) {
	s, err := h.Store.Site(ctx, r.PathValue("id"))
	return http.StatusOK, s, err
}

func (h *Handler) getKey(ctx context.Context, r *http.Request) (int, any, error) {
	k, err := h.Store.Key(ctx, r.PathValue("id"))
	return http.StatusOK, k, err
}

// notFoundMessage names the object a 404 is about when the store's message
// does not ("update account: not found" → account "acme" not found …).
func notFoundMessage(r *http.Request, msg string) string {
	id := r.PathValue("id")
	if id == "" || strings.Contains(msg, strconv.Quote(id)) {
		return msg
	}
	kind, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/admin/v1/"), "/")
	kind = strings.TrimSuffix(kind, "s")
	return fmt.Sprintf("%s %q not found (GET /admin/v1/%ss lists them)", kind, id, kind)
}
