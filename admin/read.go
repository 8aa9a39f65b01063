package admin

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/keygate/keygate/keystore"
)

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

func (h *Handler) listAccounts(ctx context.Context, r *http.Request) (int, any, error) {
	return paged(r, func(after string, limit int) ([]keystore.Account, error) { return h.Store.Accounts(ctx, after, limit) },
		func(a keystore.Account) string { return a.ID },
		func(list []keystore.Account, next string) any { return AccountPage{Accounts: list, Next: next} })
}

// byID serves GET …/{id}: what read finds for the path's id.
func byID[T any](h *Handler, read func(*keystore.Store, context.Context, string) (T, error)) endpoint {
	return func(ctx context.Context, r *http.Request) (int, any, error) {
		v, err := read(h.Store, ctx, r.PathValue("id"))
		return http.StatusOK, v, err
	}
}

func (h *Handler) listSites(ctx context.Context, r *http.Request) (int, any, error) {
	account := r.URL.Query().Get("account")
	return paged(r, func(after string, limit int) ([]keystore.Site, error) {
		return h.Store.Sites(ctx, account, after, limit)
	},
		func(s keystore.Site) string { return s.ID },
		func(list []keystore.Site, next string) any { return SitePage{Sites: list, Next: next} })
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
