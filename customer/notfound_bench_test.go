package customer_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keygate/keygate/customer"
)

// BenchmarkNotFound times the two answers the account boundary must not
// tell apart: account A revoking B's key (a key that exists, of another
// account) and revoking an id that does not exist. Both run the same
// steps: the session check, the account read, the write-rate charge, one
// LookupKeyID query (the key with its site and account in one join), and
// the same 404 body. The only difference is that the foreign key's row is
// found and scanned before its account is compared. Likewise a foreign site
// and a missing one both cost one Store.Site query (ownSite); the
// benchmark covers that with rotate-key.
//
// Run: go test -run '^$' -bench NotFound -count 10 ./customer/ | benchstat -
// (README "Let customers manage their keys" has the numbers.)
func BenchmarkNotFound(b *testing.B) {
	f := newFixture(b, func(h *customer.Handler) { h.WritesPerMinute = 1 << 40 })
	theirs := f.mustKey("site_b")
	auth := "Bearer " + f.token("acc_a", "owner")
	for _, bc := range []struct{ name, path string }{
		{"revoke/foreign", "/v1/api-keys/" + theirs.ID + "/revoke"},
		{"revoke/missing", "/v1/api-keys/key_" + theirs.ID[4:8] + "doesnotexist12345/revoke"},
		{"rotate/foreign", "/v1/sites/site_b/rotate-key"},
		{"rotate/missing", "/v1/sites/site_q/rotate-key"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, bc.path, nil)
				req.Header.Set("Authorization", auth)
				rec := httptest.NewRecorder()
				f.mux.ServeHTTP(rec, req)
				if rec.Code != http.StatusNotFound {
					b.Fatalf("%s: %d %s", bc.path, rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkNotFoundQuery times only the store read that differs between the
// two cases (everything else in BenchmarkNotFound is the same code): the
// LookupKeyID join finding another account's key or nothing, and
// Store.Site finding another account's site or nothing.
func BenchmarkNotFoundQuery(b *testing.B) {
	f := newFixture(b, nil)
	theirs := f.mustKey("site_b")
	ctx := b.Context()
	for _, bc := range []struct {
		name string
		read func() error
	}{
		{"key/foreign", func() error { _, err := f.store.LookupKeyID(ctx, theirs.ID); return err }},
		{"key/missing", func() error { _, err := f.store.LookupKeyID(ctx, "key_doesnotexist12345678"); return err }},
		{"site/foreign", func() error { _, err := f.store.Site(ctx, "site_b"); return err }},
		{"site/missing", func() error { _, err := f.store.Site(ctx, "site_q"); return err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				_ = bc.read()
			}
		})
	}
}
