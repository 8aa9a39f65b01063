package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// AuditPage is the answer of GET /admin/v1/audit: entries oldest first,
// and the cursor of the next page when this one is full.
type AuditPage struct {
	Entries []keystore.AuditEntry `json:"entries"`
	Next    string                `json:"next,omitempty"`
}

// audit serves GET /admin/v1/audit?target=ID&after=SEQ&limit=N.
func (h *Handler) audit(ctx context.Context, r *http.Request) (int, any, error) {
	q := r.URL.Query()
	limit, err := limitQuery(r, defaultLimit, keystore.MaxAuditPage)
	if err != nil {
		return 0, nil, err
	}
	var after int64
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, nil, invalid(`"after" must be the "next" of a previous page`)
		}
		after = n
	}
	target := q.Get("target")
	if len(target) > 256 {
		return 0, nil, invalid(`"target" is too long`)
	}
	entries, err := h.Store.Audit(ctx, target, after, limit)
	if err != nil {
		return 0, nil, err
	}
	page := AuditPage{Entries: entries}
	if page.Entries == nil {
		page.Entries = []keystore.AuditEntry{}
	}
	if len(entries) == limit {
		page.Next = strconv.FormatInt(entries[len(entries)-1].Seq, 10)
	}
	return http.StatusOK, page, nil
}

// tokenName finds the named admin token a request presents, comparing
// digests in constant time against every token (no early exit), so
// neither a token's content, its length nor which one matched leaks
// through timing. The name becomes the actor of the request's writes.
func (h *Handler) tokenName(r *http.Request) (string, bool) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return "", false
	}
	tokens := h.Tokens
	if h.Token != "" {
		tokens = make(map[string]string, len(h.Tokens)+1)
		for n, t := range h.Tokens {
			tokens[n] = t
		}
		tokens["admin"] = h.Token
	}
	sum := sha256.Sum256([]byte(got))
	name := ""
	for n, t := range tokens {
		if t == "" {
			continue
		}
		want := sha256.Sum256([]byte(t))
		if subtle.ConstantTimeCompare(sum[:], want[:]) == 1 {
			name = n
		}
	}
	return name, name != ""
}
