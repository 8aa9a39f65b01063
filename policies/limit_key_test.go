package policies

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

func TestCounterKey(t *testing.T) {
	in := &Input{Key: &Key{ID: "key_1", Mode: "live"}, Site: &Site{ID: "s1"}, Account: &Account{ID: "a1"}}
	for _, tt := range []struct{ key, want string }{
		{"key:key_1:live", "key:key_1:live"}, // written out: as before
		{"key:{key}:live", "key:key_1:live"},
		{"site:{site}:{mode}", "site:s1:live"},
		{"{account}/{site}/{key}", "a1/s1/key_1"},
		{"{key}{key}", "key_1key_1"},
		{"odd:{other}:{key", "odd:{other}:{key"}, // not a placeholder: as written
		{"{", "{"},
	} {
		got, err := Limit{Key: tt.key}.CounterKey(in)
		if err != nil || got != tt.want {
			t.Errorf("%q: %q, %v; want %q", tt.key, got, err, tt.want)
		}
	}
	// What a placeholder is filled with is not read again.
	odd := &Input{Key: &Key{ID: "{site}", Mode: "live"}, Site: &Site{ID: "s1"}}
	if got, err := (Limit{Key: "{key}:{site}"}).CounterKey(odd); err != nil || got != "{site}:s1" {
		t.Errorf("filled twice: %q, %v", got, err)
	}
	// No key, site or account to fill in: an error, never "key::live".
	for _, in := range []*Input{{}, {Key: &Key{Mode: "live"}}, {Key: &Key{ID: "k", Mode: "live"}}} {
		for _, key := range []string{"key:{key}:live", "site:{site}", "acct:{account}"} {
			if in.Key != nil && in.Key.ID != "" && key == "key:{key}:live" {
				continue
			}
			if got, err := (Limit{Key: key}).CounterKey(in); !errors.Is(err, ErrPolicy) {
				t.Errorf("%q for %+v: %q, %v; want ErrPolicy", key, in, got, err)
			}
		}
	}
	long := &Input{Key: &Key{ID: strings.Repeat("k", maxLimitKey), Mode: "live"}}
	if _, err := (Limit{Key: "key:{key}"}).CounterKey(long); !errors.Is(err, ErrPolicy) {
		t.Errorf("a key past maxLimitKey once filled: %v", err)
	}
}

func TestCounterKeys(t *testing.T) {
	in := &Input{Key: &Key{ID: "key_1", Mode: "live"}, Site: &Site{ID: "s1"}}
	plain := []Limit{{Key: "a"}, {Key: "b"}}
	if got, err := CounterKeys(plain, in); err != nil || &got[0] != &plain[0] {
		t.Errorf("no placeholders: %v, %v (want ls itself)", got, err)
	}
	mixed := []Limit{{Key: "a"}, {Key: "key:{key}"}}
	got, err := CounterKeys(mixed, in)
	if err != nil || len(got) != 2 || got[0].Key != "a" || got[1].Key != "key:key_1" || mixed[1].Key != "key:{key}" {
		t.Errorf("%v, %v (the decision's own limits must stay as they were: %v)", got, err, mixed)
	}
	if _, err := CounterKeys([]Limit{{Key: "{account}"}}, in); !errors.Is(err, ErrPolicy) {
		t.Errorf("missing account: %v", err)
	}
}

// TestMemoKeysOnIDsThePolicyReads: a policy that does read an id is
// remembered per id, and decides each key on its own.
func TestMemoKeysOnIDsThePolicyReads(t *testing.T) {
	p := compileSource(t, "package keygate.authz\n"+`decision := {"allow": true, "status": 200} if input.key.id == "key_1"
else := {"allow": false, "status": 403, "code": "NO", "message": "no"}`)
	ctx := context.Background()
	in := proInput()
	if d, _, err := p.DecideMemo(ctx, in); err != nil || !d.Allow {
		t.Fatalf("key_1: %+v, %v", d, err)
	}
	in.Key.ID = "key_2"
	if d, res, err := p.DecideMemo(ctx, in); err != nil || d.Allow || res != MemoMiss {
		t.Fatalf("key_2: %+v, %s, %v (want a deny of its own)", d, res, err)
	}
	// The built-in policy reads none: another key with the same facts hits.
	b := defaultPolicy(t)
	in = proInput()
	if _, res, _ := b.DecideMemo(ctx, in); res != MemoMiss {
		t.Fatalf("built-in, first key: %s", res)
	}
	in.Key.ID, in.Site.ID, in.Account.ID = "key_2", "site-b", "acct-2"
	if d, res, err := b.DecideMemo(ctx, in); err != nil || !d.Allow || res != MemoHit {
		t.Fatalf("built-in, another key with the same facts: %+v, %s, %v", d, res, err)
	}
	if in.Key.ID != "key_2" || in.Site.ID != "site-b" || in.Account.ID != "acct-2" {
		t.Fatalf("the caller's input changed: %+v %+v %+v", in.Key, in.Site, in.Account)
	}
}

// TestQuotaCounterTemplateNamesASite: keygate reads a site's usage back
// under config.limits.quota_counter knowing the site and the mode only, so
// a template naming the key or the account is refused at load (it would be
// charged under one name and read under another).
func TestQuotaCounterTemplateNamesASite(t *testing.T) {
	src := "package keygate.authz\n" + `decision := {"allow": true, "status": 200}`
	m, err := ast.ParseModuleWithOpts("p.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatal(err)
	}
	for template, ok := range map[string]bool{"site:{site}:{mode}": true, "q/{mode}/{site}": true, "acct:{account}:{mode}": false, "k:{key}": false} {
		data := map[string]any{"keygate": map[string]any{"config": map[string]any{"limits": map[string]any{"quota_counter": template}}}}
		_, err := Compile(context.Background(), &Bundle{Source: "test", Modules: map[string]*ast.Module{"p.rego": m}, Documents: data})
		if (err == nil) != ok || (err != nil && !strings.Contains(err.Error(), "quota_counter")) {
			t.Errorf("%q: %v, want ok=%t", template, err, ok)
		}
	}
}

// TestCheckCounterKeyAgrees: CheckCounterKey fails exactly when CounterKey
// does.
func TestCheckCounterKeyAgrees(t *testing.T) {
	ins := []*Input{{}, {Key: &Key{ID: "key_1", Mode: "live"}, Site: &Site{ID: "s1"}},
		{Key: &Key{ID: strings.Repeat("k", maxLimitKey-4), Mode: "live"}}, {Key: &Key{ID: "a b", Mode: "live"}}}
	for _, in := range ins {
		for _, key := range []string{"plain", "key:{key}", "{site}/{mode}", "{account}", "x{", "{key}{key}"} {
			_, err := Limit{Key: key}.CounterKey(in)
			if check := (Limit{Key: key}).CheckCounterKey(in); (check == nil) != (err == nil) {
				t.Errorf("%q for %+v: CounterKey %v, CheckCounterKey %v", key, in.Key, err, check)
			}
		}
	}
}
