package policies

import (
	"context"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"
)

// convertCached is in's value through the cache of parts, as a decision
// converts it.
func convertCached(in *Input) ast.Value {
	var enc []byte
	return in.value(&enc)
}

func sameValue(t *testing.T, what string, want, got ast.Value) {
	t.Helper()
	if want.Compare(got) != 0 {
		t.Fatalf("%s: the cached conversion differs\n got %v\nwant %v", what, got, want)
	}
}

// randomInputs are inputs over a small alphabet (so that many share
// parts), with every set of unread fields cleared as the memo clears them.
func randomInputs(t *testing.T, n int, seed uint64) []Input {
	rng := rand.New(rand.NewPCG(seed, 7))
	all := unreadHeaders | unreadQuery | unreadMethod | unreadOrigin | unreadHost | unreadPath | unreadIDs
	ins := make([]Input, n)
	for i := range ins {
		src := make(byteSource, 400)
		for j := range src {
			src[j] = byte(rng.UintN(256))
		}
		ins[i] = inputFrom(t, src)
		unreadFields(rng.UintN(1<<12)&uint(all)).clear(&ins[i], new(spareFacts))
	}
	return ins
}

// TestInputCacheEqual: on random inputs (every field, those added later
// too, with the ids cleared or not), converting through the cache of parts
// gives what Value gives, whether the parts are new, kept, or kept for
// another input: in three rounds over all of them (kept at the second miss,
// served in the third), and the first inputs again after the others.
func TestInputCacheEqual(t *testing.T) {
	ins := randomInputs(t, 3000, 1)
	for round := range 3 {
		for i := range ins {
			sameValue(t, "round "+string(rune('0'+round)), ins[i].Value(), convertCached(&ins[i]))
		}
	}
	for i := range 100 {
		sameValue(t, "again", ins[i].Value(), convertCached(&ins[i]))
	}
}

// TestInputCacheFactsChange: facts that change (a revocation, an expiry,
// a new limit, uses spent) are new content, so a new value, however often
// the old facts were converted; a cleared id and the id itself are two
// parts, so the cleared value never carries an id and the id's value
// always does.
func TestInputCacheFactsChange(t *testing.T) {
	in := proInput()
	in.Key.ID = "key_cache_facts"
	in.Site.Limits = map[string]int64{"rate": 5, "quota": 9}
	convert := func() ast.Object {
		v := convertCached(in).(ast.Object)
		sameValue(t, "facts", in.Value(), v)
		return v
	}
	for range 3 {
		convert()
	}
	in.Key.Revoked = true
	if v := convert(); v.Get(fields.key).Value.(ast.Object).Get(fields.revoked).Value != ast.Boolean(true) {
		t.Fatalf("revoked key converted as before: %v", v)
	}
	in.Key.Revoked = false
	remaining := int64(3)
	in.Key.Remaining = &remaining
	convert()
	remaining = 2
	convert()
	in.Site.Limits["rate"] = 6
	if v := convert(); v.Get(fields.site).Value.(ast.Object).Get(fields.limits).Value.(ast.Object).Get(ast.StringTerm("rate")).Value.Compare(ast.Number("6")) != 0 {
		t.Fatalf("new limit converted as before: %v", v)
	}

	cleared := *in
	unreadIDs.clear(&cleared, new(spareFacts))
	for range 3 {
		v := convertCached(&cleared).(ast.Object)
		sameValue(t, "cleared", cleared.Value(), v)
		if id := v.Get(fields.key).Value.(ast.Object).Get(fields.id); id.Value.Compare(ast.String("")) != 0 {
			t.Fatalf("cleared key converted with id %v", id)
		}
		if id := convert().Get(fields.key).Value.(ast.Object).Get(fields.id); id.Value.Compare(ast.String("key_cache_facts")) != 0 {
			t.Fatalf("key converted with id %v", id)
		}
	}
	// Another key with the same facts, its id cleared, shares the cleared
	// value: the cache keys on no id the input does not carry.
	other := *in
	otherKey := *in.Key
	otherKey.ID = "key_cache_other"
	other.Key = &otherKey
	unreadIDs.clear(&other, new(spareFacts))
	a := convertCached(&cleared).(ast.Object).Get(fields.key)
	if b := convertCached(&other).(ast.Object).Get(fields.key); a != b {
		t.Fatalf("keys with the same facts, ids cleared, converted apart: %v, %v", a, b)
	}
}

// TestInputCacheConcurrent: conversions of inputs that share parts, on
// several goroutines at once (run with -race), each get their own input's
// value.
func TestInputCacheConcurrent(t *testing.T) {
	ins := randomInputs(t, 400, 3)
	want := make([]ast.Value, len(ins))
	for i := range ins {
		want[i] = ins[i].Value()
	}
	concurrently(t, len(ins), func(j int) bool { return want[j].Compare(convertCached(&ins[j])) == 0 })
}

// concurrently runs same for every index below n, five rounds over them in
// a different order on each of eight goroutines at once (run with -race);
// same reports whether index j got its own answer.
func concurrently(t *testing.T, n int, same func(j int) bool) {
	t.Helper()
	var wg sync.WaitGroup
	bad := make(chan int, 8)
	for g := range 8 {
		wg.Go(func() {
			for r := range 5 {
				for i := range n {
					if j := (i*(g+1) + r) % n; !same(j) {
						bad <- j
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(bad)
	for j := range bad {
		t.Fatalf("%d: answered for another", j)
	}
}

// TestInputCacheKeepsOnSecondMiss: a part converted once is not kept (a
// new host, a client address: no entry is made, none is evicted); one
// converted twice is, and is then shared.
func TestInputCacheKeepsOnSecondMiss(t *testing.T) {
	in := proInput()
	in.Request.Host = "once.cache.test"
	in.Request.Prefixes = map[string]string{"/": "v1", "/v1/": "videos"}
	var enc []byte
	key := appendRequest([]byte{partRequest}, &in.Request, 0)
	r := (&terms{}).part(&enc, part{kind: partRequest, request: &in.Request})
	if v, _ := inputParts.get(key); v != nil {
		t.Fatalf("a request converted once was kept: %v", v)
	}
	if r2 := (&terms{}).part(&enc, part{kind: partRequest, request: &in.Request}); r2 == r {
		t.Fatal("a request converted once was shared")
	}
	kept, _ := inputParts.get(key)
	if kept == nil {
		t.Fatal("a request converted twice was not kept")
	}
	if r3 := (&terms{}).part(&enc, part{kind: partRequest, request: &in.Request}); r3 != kept {
		t.Fatal("a kept request was made again")
	}
	// Its prefixes, encoded while the request was made, were kept under
	// their own encoding, not the request's (nor the request under theirs).
	prefixes, _ := inputParts.get(appendStringMap([]byte{partPrefixes}, in.Request.Prefixes))
	if prefixes == nil || prefixes == kept || kept.Value.(ast.Object).Get(fields.prefixes) != prefixes {
		t.Fatalf("prefixes kept as %v in a request kept as %v", prefixes, kept)
	}
}

// TestDecideConvertsThroughCache: a memo miss of the built-in policy
// converts its key's, site's and account's facts once they were seen
// before, whatever the host: fewer allocations than converting them.
func TestDecideConvertsThroughCache(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	e := engineFor(t, Default())
	e.SetMemo(false)
	in := proInput()
	ctx := context.Background()
	p := e.Current()
	uncached := testing.AllocsPerRun(50, func() {
		if _, err := p.decide(ctx, in, nil); err != nil {
			t.Fatal(err)
		}
	})
	var enc []byte
	cached := testing.AllocsPerRun(50, func() {
		if _, err := p.decide(ctx, in, &enc); err != nil {
			t.Fatal(err)
		}
	})
	// The request alone is five allocations of OPA's; the facts are
	// fifteen more.
	if cached > uncached-15 {
		t.Fatalf("decide allocates %.0f through the cache, %.0f without it", cached, uncached)
	}
}

// TestInputCacheSharedUnderWith: a custom policy that OPA's evaluator
// decides (`with` on the input: topdown copies the whole input) while it
// reads a shared part's keys, on several goroutines deciding the same new
// facts at once (run with -race). OPA sorts an object's keys in place at
// their first read, and its Copy reads them without a lock: a kept part
// (and a shared credential object) is sorted before it is shared, or a
// copy taken mid-sort could lose a field such as revoked.
func TestInputCacheSharedUnderWith(t *testing.T) {
	src := `package keygate.authz
decision := {"allow": true, "rule": sprintf("%d/%d", [n, c])} if {
	m := input.request.method with input.request.path as "/x"
	n := count(object.keys(input.key))
	c := count(object.keys(input.credential))
	m != ""
}
`
	e := engineFor(t, fstest.MapFS{"authz.rego": {Data: []byte(src)}})
	e.SetMemo(false)
	schemes := []string{"bearer", "basic", "x-api-key", "bare", ""}
	kinds := []string{"key", "token", ""}
	for i := range 100 {
		in := proInput()
		in.Credential.Scheme, in.Credential.Kind = schemes[i%5], kinds[(i/5)%3]
		in.Key.Meta = map[string]string{"n": strconv.Itoa(i)}
		in.Key.Scopes = []string{"a"}
		want := strconv.Itoa(in.Value().(ast.Object).Get(fields.key).Value.(ast.Object).Len()) + "/3"
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				c := *in
				d, err := e.Decide(context.Background(), &c)
				if err != nil || !d.Allow || d.Rule != want {
					t.Errorf("decision %+v, %v; want an allow by rule %s", d, err, want)
				}
			})
		}
		wg.Wait()
	}
}

// TestInputCacheKeepsSmallPartsOnly: a part whose encoding is over
// maxKeptPart (a request with a long path, a policy reading it) is
// converted every time, and a kept part is made from terms of its own: it
// keeps nothing of the input it was first made for alive (the input's
// path, here 16 KiB, would otherwise stay for as long as the part is kept:
// a 60 KiB path per slot was 257 MB).
func TestInputCacheKeepsSmallPartsOnly(t *testing.T) {
	requestOf := func(in *Input) *ast.Term {
		return convertCached(in).(ast.Object).Get(fields.request)
	}
	long := proInput()
	long.Request.Headers = nil
	long.Request.Path = "/v1/" + strings.Repeat("a", 2*maxKeptPart)
	if a, b, c := requestOf(long), requestOf(long), requestOf(long); a == c || b == c {
		t.Fatal("a request over maxKeptPart was kept")
	}
	short := proInput()
	short.Request.Headers = nil
	short.Request.Path = "/v1/kept-" + strconv.Itoa(rand.IntN(1<<30))
	if a, b, c := requestOf(short), requestOf(short), requestOf(short); a == c || b != c {
		t.Fatalf("a short request was not kept at its second miss (%p %p %p)", a, b, c)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range valueSlots {
		for range 2 { // kept at the second miss
			in := proInput()
			in.Request.Headers = map[string]string{"x-request-id": "r"} // the request itself is never kept
			in.Request.Path = "/" + strconv.Itoa(i) + strings.Repeat("a", 16<<10)
			in.Key.Meta = map[string]string{"n": strconv.Itoa(i)}
			_ = convertCached(in)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 24<<20 {
		t.Fatalf("the cache of parts keeps %d MiB after %d keys' facts were kept", grew>>20, valueSlots)
	}
}
