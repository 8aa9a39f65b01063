package admin_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
)

func TestAdminLimitsAndUsage(t *testing.T) {
	f := newFixture(t)
	if a := f.call("POST", "/admin/v1/accounts", `{"id":"acme","plan":"plus"}`); a.status != http.StatusCreated {
		t.Fatalf("account: %+v", a)
	}
	if a := f.call("POST", "/admin/v1/sites", `{"id":"acme-web","account":"acme"}`); a.status != http.StatusCreated {
		t.Fatalf("site: %+v", a)
	}

	a := f.call("PUT", "/admin/v1/sites/acme-web/limits", `{"rate":600,"quota":0}`)
	if a.status != http.StatusOK || a.raw != `{"limits":{"quota":0,"rate":600},"site":"acme-web"}`+"\n" {
		t.Fatalf("set site limits: %d %s", a.status, a.raw)
	}
	if a := f.call("GET", "/admin/v1/sites/acme-web/limits", ""); a.raw != `{"limits":{"quota":0,"rate":600},"site":"acme-web"}`+"\n" {
		t.Errorf("get site limits: %s", a.raw)
	}
	if a := f.call("PUT", "/admin/v1/accounts/acme/limits", `{}`); a.status != http.StatusOK {
		t.Errorf("clear account limits: %d %s", a.status, a.raw)
	}
	for _, bad := range []struct{ path, body string }{
		{"/admin/v1/sites/acme-web/limits", `{"rate":-1}`},
		{"/admin/v1/sites/acme-web/limits", `{"Rate":1}`},
		{"/admin/v1/sites/acme-web/limits", `{"rate":1.5}`},
		{"/admin/v1/sites/acme-web/limits", `[1]`},
	} {
		if a := f.call("PUT", bad.path, bad.body); a.status != http.StatusBadRequest {
			t.Errorf("PUT %s %s: %d %s, want 400", bad.path, bad.body, a.status, a.raw)
		}
	}
	if a := f.call("PUT", "/admin/v1/sites/nope/limits", `{"rate":1}`); a.status != http.StatusNotFound {
		t.Errorf("unknown site: %d", a.status)
	}

	now := time.Now()
	if _, ok, err := f.store.ChargeQuota(context.Background(), "site:acme-web:live", now.UTC().Format("2006-01"), 7, 10, now); !ok || err != nil {
		t.Fatal(ok, err)
	}
	a = f.call("GET", "/admin/v1/sites/acme-web/usage", "")
	usage, _ := a.body["usage"].([]any)
	if a.status != http.StatusOK || len(usage) != 2 {
		t.Fatalf("usage: %d %s", a.status, a.raw)
	}
	live := usage[0].(map[string]any)
	if live["mode"] != "live" || live["used"] != 7.0 || live["quota"] != 10.0 || live["remaining"] != 3.0 {
		t.Errorf("live usage %v", live)
	}
	if a := f.call("GET", "/admin/v1/sites/acme-web/usage?month=2020-01", ""); a.body["period"] != "2020-01" || a.body["resets_at"] != "2020-02-01T00:00:00Z" {
		t.Errorf("usage of another month: %s", a.raw)
	}
	if a := f.call("GET", "/admin/v1/sites/acme-web/usage?month=jan", ""); a.status != http.StatusBadRequest {
		t.Errorf("bad month: %d", a.status)
	}
	if a := f.call("GET", "/admin/v1/sites/nope/usage", ""); a.status != http.StatusNotFound {
		t.Errorf("unknown site: %d", a.status)
	}
}

// renamedCounters is a policy whose quota counters are named "q/{mode}/{site}".
type renamedCounters struct{}

func (renamedCounters) QuotaCounter(site, mode string) string { return "q/" + mode + "/" + site }

// TestSiteUsageUnderThePolicysCounterNames: usage is read under the names
// the policy charges, not under the built-in policy's.
func TestSiteUsageUnderThePolicysCounterNames(t *testing.T) {
	f := newFixture(t)
	f.call("POST", "/admin/v1/accounts", `{"id":"acme","plan":"pro"}`)
	f.call("POST", "/admin/v1/sites", `{"id":"acme-web","account":"acme"}`)
	now := time.Now()
	if _, ok, err := f.store.ChargeQuota(context.Background(), "q/test/acme-web", now.UTC().Format("2006-01"), 4, 10, now); !ok || err != nil {
		t.Fatal(ok, err)
	}
	u, err := admin.ReadSiteUsage(context.Background(), f.store, renamedCounters{}, "acme-web", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Usage) != 2 || u.Usage[1].Counter != "q/test/acme-web" || u.Usage[1].Used != 4 {
		t.Errorf("usage %+v", u.Usage)
	}
	if u, _ := admin.ReadSiteUsage(context.Background(), f.store, nil, "acme-web", now); u.Usage[1].Counter != "site:acme-web:test" || u.Usage[1].Used != 0 {
		t.Errorf("built-in names: %+v", u.Usage)
	}
}
