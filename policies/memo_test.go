package policies

import (
	"context"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
)

func compileSource(t *testing.T, src string) *Policy {
	t.Helper()
	return compileWithData(t, src, map[string]any{"config": map[string]any{"echo": false}})
}

func compileWithData(t *testing.T, src string, data map[string]any) *Policy {
	t.Helper()
	m, err := ast.ParseModuleWithOpts("p.rego", src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(context.Background(), &Bundle{Source: "test", Modules: map[string]*ast.Module{"p.rego": m}, Documents: data})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// defaultBundle loads the built-in policy, as keygate does when no policy
// directory is configured.
func defaultBundle(t testing.TB) *Bundle {
	t.Helper()
	b, err := Load(Default(), BuiltIn)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func defaultPolicy(t testing.TB) *Policy {
	t.Helper()
	p, err := Compile(context.Background(), defaultBundle(t))
	if err != nil {
		t.Fatal(err)
	}
	p.WaitEvaluator(context.Background())
	return p
}

// ignored lists which request fields a memo leaves out of its keys.
func ignored(m *memo) []string {
	var out []string
	for _, f := range ignorable {
		probe := clearedAll(m, fullInput())
		also := probe
		f.bit.clear(&also, new(spareFacts))
		if reflect.DeepEqual(probe, also) {
			out = append(out, strings.Join(f.path, "."))
		}
	}
	return out
}

// ign lists ignored fields as ignored gives them: request fields by name,
// others by their path ("key.id"); ids adds every id field.
func ign(ids bool, names ...string) []string {
	var out []string
	for _, f := range ignorable {
		p := strings.Join(f.path, ".")
		if (ids && f.bit&unreadIDs != 0) || slices.Contains(names, p) || slices.Contains(names, strings.TrimPrefix(p, "request.")) {
			out = append(out, p)
		}
	}
	return out
}

func clearedAll(m *memo, in Input) Input {
	m.unread.clear(&in, new(spareFacts))
	return in
}

type memoCase struct {
	name        string
	src         string
	wantMemo    bool
	wantIgnored []string
}

func TestMemoAnalysis(t *testing.T) {
	const head = "package keygate.authz\n"
	tests := []memoCase{
		{"reads path only", head + `decision := {"allow": input.request.path == "/x"}`, true, ign(true, "headers", "query", "method", "origin", "host")},
		{"reads one header", head + `decision := {"allow": input.request.headers["x-a"] == "1"}`, true, ign(true, "query", "method", "origin", "host", "path")},
		{"alias resolved by partial evaluation", head + `r := input.request
decision := {"allow": r.path == "/x"}`, true, ign(true, "headers", "query", "method", "origin", "host")},
		{"reads the request whole", head + `decision := {"allow": count(input.request) > 5}`, true, ign(true)},
		{"passes the request to a function", head + `decision := {"allow": f(input.request)}
f(r) := true if r.path == "/x"`, true, ign(true, "headers", "query", "method", "origin", "host")},
		{"walks the request", head + `decision := {"allow": true} if { walk(input.request, [p, v]); v == "x" }`, true, ign(true)},
		{"reads input whole", head + `decision := {"allow": count(input) > 0}`, true, nil},
		{"dynamic key", head + `decision := {"allow": input[x] == 1} if x := "request"`, true, ign(true)},
		{"dynamic key of the input's own", head + `decision := {"allow": input[input.credential.kind] == 1}`, true, nil},
		{"field named by a constant", head + `decision := {"allow": input.request[x] == "GET"} if x := "method"`, true, ign(true, "headers", "query", "origin", "host", "path")},
		{"field named by the input", head + `decision := {"allow": input.request[input.credential.kind] == "GET"}`, true, ign(true)},
		{"header read only under data that is off", head + `decision := {"allow": true, "id": id} if id := request_id
request_id := input.request.headers["x-request-id"] if data.config.echo
default request_id := ""`, true, ign(true, "headers", "query", "method", "origin", "host", "path")},
		{"rule reached through another rule", head + `decision := {"allow": ok}
ok if input.request.host == "a"`, true, ign(true, "headers", "query", "method", "origin", "path")},
		{"import", head + `import input.request.headers as h
decision := {"allow": h["x-a"] == "1"}`, true, ign(true, "query", "method", "origin", "host", "path")},
		{"reads the path only without keygate's classification", head + `decision := {"allow": p == "/x"}
p := input.request.exact_path
p := input.request.path if not input.request.prefixes`, true, ign(true, "headers", "query", "method", "origin", "host", "path")},
		{"reads the key's id", head + `decision := {"allow": input.key.id == "key_1"}`, true,
			ign(false, "headers", "query", "method", "origin", "host", "path", "key.name", "site.id", "site.account", "site.domains", "account.id")},
		{"reads the key whole", head + `decision := {"allow": object.get(input.key, "meta", {}) == {}}`, true,
			ign(false, "headers", "query", "method", "origin", "host", "path", "site.id", "site.account", "site.domains", "account.id")},
		{"reads the site's account", head + `decision := {"allow": input.site.account == input.account.id}`, true,
			ign(false, "headers", "query", "method", "origin", "host", "path", "key.id", "key.name", "site.id", "site.domains")},
		{"clock", head + `decision := {"allow": time.now_ns() > 0}`, false, nil},
		{"random", head + `decision := {"allow": rand.intn("x", 2) == 1}`, false, nil},
		{"print", head + `decision := {"allow": true} if print("hi")`, false, nil},
		{"jwt verification reads the clock", head + `decision := {"allow": v} if [v, _, _] := io.jwt.decode_verify("x", {"secret": "s"})`, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := compileSource(t, tt.src)
			if (p.memo != nil) != tt.wantMemo {
				t.Fatalf("memo = %v, want %t", p.memo != nil, tt.wantMemo)
			}
			if p.memo == nil {
				return
			}
			if diff := cmp.Diff(tt.wantIgnored, ignored(p.memo)); diff != "" {
				t.Fatalf("ignored fields (-want +got):\n%s", diff)
			}
		})
	}
	if got := ignored(defaultPolicy(t).memo); !cmp.Equal(got, ign(true, "headers", "query", "path")) {
		t.Errorf("built-in policy ignores %v", got)
	}
	// The same rules with the data switch on read the header.
	i := slices.IndexFunc(tests, func(c memoCase) bool { return c.name == "header read only under data that is off" })
	p := compileWithData(t, tests[i].src, map[string]any{"config": map[string]any{"echo": true}})
	if got := ignored(p.memo); slices.Contains(got, "request.headers") {
		t.Errorf("with echo on, headers are ignored: %v", got)
	}
}

// fullInput sets every field, so that a reflection walk can change each one.
func fullInput() Input {
	return Input{
		Request: Request{Method: "GET", Host: "api.example.com", Path: "/v1/sites/acme/x", Query: "a=b", PathOK: true,
			Origin: &Origin{Scheme: "https", Host: "acme.com", Port: "443", DefaultPort: true}, Headers: map[string]string{"accept": "*/*"}},
		Credential: Credential{Status: CredFound, Kind: "key", Scheme: "bearer"},
		Key:        &Key{ID: "key_1", Mode: "live", Name: "n"},
		Site:       &Site{ID: "acme", Account: "a", Domains: []string{"acme.com"}, Active: true, Limits: map[string]int64{"rate": 5}},
		Account:    &Account{ID: "a", Plan: "pro", Status: "active", Limits: map[string]int64{"quota": 7}},
		Public: &Public{Status: CredFound, Site: &Site{ID: "s", Domains: []string{"d"}, Limits: map[string]int64{"rate": 1}},
			Account: &Account{ID: "b", Limits: map[string]int64{"quota": 2}}},
	}
}

// TestMemoKeyCoversEveryField changes each leaf of Input in turn (by
// reflection, so fields added later are covered) and checks that the memo
// key changes, except for the request fields the policy never reads.
func TestMemoKeyCoversEveryField(t *testing.T) {
	m := newMemo(context.Background(), nil, nil, nil) // a policy that reads no input: every ignorable field is ignored
	in := fullInput()
	in.Request.Prefixes, in.Request.ExactPath = map[string]string{"/v1/sites/": "acme"}, "/v1/sites/acme/x"
	withEntitlements(&in)
	key := func() string {
		return string(appendInput(nil, &in, m.unreadFields()))
	}
	base := key()
	ignoredField := map[string]bool{"Request.Query": true, "Request.Path": true, "Request.Method": true, "Request.Host": true,
		"Request.Origin.Scheme": true, "Request.Origin.Host": true, "Request.Origin.Port": true, "Request.Origin.DefaultPort": true,
		"Key.ID": true, "Key.Name": true, "Site.ID": true, "Site.Account": true, "Site.Domains": true, "Account.ID": true}
	check := func(path string) {
		if changed := key() != base; changed == ignoredField[path] {
			t.Errorf("%s: key changed = %t, want %t", path, changed, !ignoredField[path])
		}
	}
	leaves := 0
	var visit func(path string, v reflect.Value)
	visit = func(path string, v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			visit(path, v.Elem())
		case reflect.Struct:
			for i := range v.NumField() {
				visit(strings.TrimPrefix(path+"."+v.Type().Field(i).Name, "."), v.Field(i))
			}
		case reflect.Slice:
			for i := range v.Len() {
				visit(path, v.Index(i))
			}
		case reflect.String:
			old := v.String()
			v.SetString(old + "x")
			check(path)
			v.SetString(old)
			leaves++
		case reflect.Bool:
			v.SetBool(!v.Bool())
			check(path)
			v.SetBool(!v.Bool())
			leaves++
		case reflect.Int64:
			v.SetInt(v.Int() + 1)
			check(path)
			v.SetInt(v.Int() - 1)
			leaves++
		case reflect.Map:
			if path == "Request.Headers" {
				break // ignored by this memo; unmemoizable when read
			}
			if v.IsNil() {
				t.Errorf("%s: set it in fullInput so that it is checked", path)
				break
			}
			for _, k := range v.MapKeys() {
				old := v.MapIndex(k)
				v.SetMapIndex(k, reflect.Zero(old.Type()))
				check(path + "[]")
				v.SetMapIndex(k, old)
				leaves++
			}
			// A new entry changes the key too.
			v.SetMapIndex(reflect.ValueOf("zz-added"), reflect.Zero(v.Type().Elem()))
			check(path + "+")
			v.SetMapIndex(reflect.ValueOf("zz-added"), reflect.Value{})
		default:
			t.Errorf("%s: kind %s: teach this test (and check appendKey) about it", path, v.Kind())
		}
	}
	visit("", reflect.ValueOf(&in).Elem())
	if leaves < 25 {
		t.Fatalf("visited only %d leaves", leaves)
	}
}

// TestMemoAgreesWithEvaluation: with the built-in policy, a remembered
// decision is always the one evaluation gives, across inputs that differ
// only in facts that matter (revoked, expired, site, mode, path, …).
func TestMemoAgreesWithEvaluation(t *testing.T) {
	p := defaultPolicy(t)
	if p.memo == nil {
		t.Fatal("the built-in policy should be memoizable")
	}
	e := NewEngine(p)
	ctx := context.Background()
	var inputs []*Input
	for _, path := range []string{"/v1/videos", "/v1/sites/acme/x", "/v1/sites/other/x", "/health", "/v1/public/acme/x"} {
		for _, status := range []string{CredFound, CredMissing, CredUnknown, CredUnavailable} {
			for _, revoked := range []bool{false, true} {
				for _, expired := range []bool{false, true} {
					for _, active := range []bool{false, true} {
						for _, plan := range []string{"pro", "free"} {
							in := fullInput()
							in.Request.Path, in.Credential.Status = path, status
							in.Key.Revoked, in.Key.Expired, in.Site.Active, in.Account.Plan = revoked, expired, active, plan
							in.Site.ID = "acme"
							in.Public.Status = status
							inputs = append(inputs, &in)
						}
					}
				}
			}
		}
	}
	for round := range 2 {
		for i, in := range inputs {
			got, err := e.Decide(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := p.decide(ctx, in, nil)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("round %d input %d: memo disagrees with evaluation (-eval +memo):\n%s", round, i, diff)
			}
		}
	}
	if n := memoLen(p.memo); n != len(inputs) {
		t.Errorf("%d memo entries for %d distinct inputs", n, len(inputs))
	}
}

// memoLen is how many entries m holds.
func memoLen(m *memo) int {
	n, _, _ := m.table.stats()
	return n
}

// memoBytes is the heap m estimates its entries hold.
func memoBytes(m *memo) int64 {
	_, bytes, _ := m.table.stats()
	return bytes
}

// TestMemoBounded: the entries' estimated bytes stay within the budget
// however many are put, and a key over maxMemoKey is not remembered.
func TestMemoBounded(t *testing.T) {
	m := newMemo(context.Background(), nil, nil, nil)
	m.table.budget = 1 << 20
	d := Decision{Allow: true, Headers: map[string]string{"x-a": "1"}, Limits: []Limit{{Kind: "rate", Key: "k"}}}
	for i := range 50_000 {
		m.put(&memoScratch{key: []byte(strconv.Itoa(i) + strings.Repeat("k", i%300))}, d)
		if _, bytes, _ := m.table.stats(); bytes > m.table.budget {
			t.Fatalf("after %d puts: %d bytes, budget %d", i+1, bytes, m.table.budget)
		}
	}
	n, _, evictions := m.table.stats()
	if n == 0 || evictions == 0 || n+int(evictions) != 50_000 {
		t.Fatalf("%d entries, %d evictions for 50,000 puts", n, evictions)
	}
	in := fullInput()
	in.Key.Mode = strings.Repeat("a", maxMemoKey)
	if _, key, _ := m.get(&in); key != nil {
		t.Fatal("an input with a key over maxMemoKey would be remembered")
	}
}

// TestDecisionClone: a clone shares no memory with its original, for every
// field of Decision (by reflection, so fields added later are checked).
func TestDecisionClone(t *testing.T) {
	d := Decision{Allow: true, Status: 200, Code: "C", Message: "M", Rule: "R",
		Headers: map[string]string{"a": "1"}, ResponseHeaders: map[string]string{"b": "2"}, Body: []byte(`{}`),
		Limits: []Limit{{Kind: "rate", Key: "k", Limit: 1}}}
	c := d.clone()
	if diff := cmp.Diff(d, c); diff != "" {
		t.Fatalf("clone differs (-orig +clone):\n%s", diff)
	}
	dv, cv := reflect.ValueOf(d), reflect.ValueOf(c)
	for i := range dv.NumField() {
		name := dv.Type().Field(i).Name
		switch dv.Field(i).Kind() {
		case reflect.Map, reflect.Slice, reflect.Pointer, reflect.Interface, reflect.Chan, reflect.Func:
			if dv.Field(i).IsNil() {
				t.Errorf("set %s in this test so that its cloning is checked", name)
			} else if dv.Field(i).UnsafePointer() == cv.Field(i).UnsafePointer() {
				t.Errorf("clone shares %s with the original: clone it in Decision.clone", name)
			}
		}
	}
}

// TestMemoConcurrent: many goroutines deciding at once (run with -race)
// each get the decision evaluation gives for their own input. Hits share
// one Decision, which callers only read (extauthz TestMemoHitUnchanged).
func TestMemoConcurrent(t *testing.T) {
	p := defaultPolicy(t)
	e := NewEngine(p)
	ctx := context.Background()
	paths := []string{"/v1/videos", "/v1/sites/acme/x", "/v1/sites/other/x", "/health"}
	want := make([]Decision, len(paths))
	for i, path := range paths {
		in := fullInput()
		in.Request.Path = path
		var err error
		if want[i], err = p.decide(ctx, &in, nil); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				n := (g + i) % len(paths)
				in := fullInput()
				in.Request.Path = paths[n]
				got, err := e.Decide(ctx, &in)
				if err != nil {
					t.Error(err)
					return
				}
				if !cmp.Equal(want[n], got) {
					t.Errorf("%s: got %+v, want %+v", paths[n], got, want[n])
					return
				}
			}
		})
	}
	wg.Wait()
}

// --decision-memo=false: every decision is evaluated and nothing is
// remembered; turning it back on remembers again.
func TestSetMemoOff(t *testing.T) {
	p := defaultPolicy(t)
	e := NewEngine(p)
	e.SetMemo(false)
	ctx := context.Background()
	in := fullInput()
	for range 3 {
		if _, err := e.Decide(ctx, &in); err != nil {
			t.Fatal(err)
		}
	}
	if n := memoLen(p.memo); n != 0 {
		t.Fatalf("memo off, yet %d decisions were remembered", n)
	}
	e.SetMemo(true)
	if _, err := e.Decide(ctx, &in); err != nil {
		t.Fatal(err)
	}
	if n := memoLen(p.memo); n != 1 {
		t.Fatalf("memo back on: %d entries, want 1", n)
	}
}

// TestMemoAnalysisFindsGuardedReads: a rule that holds only without
// keygate's classification (`not input.request.prefixes`) is skipped by
// the analysis, but not the else branches after it, and not at all when
// the policy replaces the input with `with`, under which it may hold while
// keygate decides. Each policy blocks key_2 by its id: the memo must key
// on the id and decide key_2 as the policy does on its whole input.
func TestMemoAnalysisFindsGuardedReads(t *testing.T) {
	const head = "package keygate.authz\n" + `decision := {"allow": true, "status": 200} if ok
else := {"allow": false, "status": 403, "code": "NO", "message": "no"}
`
	cases := map[string]string{
		"else after the guard": head + `
ok := true if { not input.request.prefixes } else := true if { input.key.id != "key_2" } else := false`,
		"guard in the middle of an else chain": head + `
ok := false if { input.request.method == "NOPE" } else := true if { not input.request.prefixes } else := true if { input.key.id != "key_2" } else := false`,
		"with prefixes as false": head + `
default ok := false
ok if { not blocked with input.request.prefixes as false }
blocked if { not input.request.prefixes; input.key.id == "key_2" }`,
		"with request as": head + `
default ok := false
ok if { not blocked with input.request as {"path": "/x"} }
blocked if { not input.request.prefixes; input.key.id == "key_2" }`,
		"with input as": head + `
default ok := false
ok if { not blocked with input as {"key": input.key} }
blocked if { not input.request.prefixes; input.key.id == "key_2" }`,
		"with an imported alias": "package keygate.authz\nimport input.request as req\n" + head[len("package keygate.authz\n"):] + `
default ok := false
ok if { not blocked with req as {"path": "/x"} }
blocked if { not input.request.prefixes; input.key.id == "key_2" }`,
		"with an imported alias's field": "package keygate.authz\nimport input as inp\n" + head[len("package keygate.authz\n"):] + `
default ok := false
ok if { not blocked with inp.request.prefixes as false }
blocked if { not input.request.prefixes; input.key.id == "key_2" }`,
	}
	ctx := context.Background()
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			p := compileSource(t, src)
			if p.unread&unreadKeyID != 0 {
				t.Errorf("key.id proved unread")
			}
			in := proInput()
			if d, _, err := p.DecideMemo(ctx, in); err != nil || !d.Allow {
				t.Fatalf("key_1: %+v, %v", d, err)
			}
			in.Key.ID = "key_2"
			if d, _, err := p.DecideMemo(ctx, in); err != nil || d.Allow {
				t.Fatalf("key_2, blocked by its id: %+v, %v", d, err)
			}
		})
	}
}
