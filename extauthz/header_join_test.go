package extauthz

import (
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// joinOneByOne is the rule headerJoin keeps, joined into the map at every
// field (what keygate did before): a repeated name's value is appended
// after a comma unless it equals the name's value so far.
func joinOneByOne(m map[string]string, k, v string) {
	k = strings.ToLower(k)
	if old, ok := m[k]; ok {
		if old == v {
			return
		}
		v = old + "," + v
	}
	m[k] = v
}

func TestHeaderJoinSameAsOneByOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{"Authorization", "authorization", "X-API-Key", "x-a", "X-A"}
	values := []string{"", "a", "b", "a,b", "a,b,a", ",", "Bearer x"}
	for round := 0; round < 2000; round++ {
		want, got := map[string]string{}, map[string]string{}
		j := headerJoin{m: got}
		for n := rng.IntN(8); n > 0; n-- {
			k, v := names[rng.IntN(len(names))], values[rng.IntN(len(values))]
			joinOneByOne(want, k, v)
			j.add(k, v)
		}
		j.done()
		if len(got) != len(want) {
			t.Fatalf("round %d: got %q, want %q", round, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("round %d: %s = %q, want %q", round, k, got[k], v)
			}
		}
	}
}

// Many fields of one name cost memory linear in their size: a 4 MiB
// CheckRequest of alternating values of one name copied the growing value
// at every field (quadratic: 20,000 fields allocated ~800 MB).
func TestHeaderJoinLinear(t *testing.T) {
	const fields = 20000
	entries := make([]*corev3.HeaderValue, fields)
	for i := range entries {
		entries[i] = &corev3.HeaderValue{Key: "x-a", Value: []string{"ab", "cd"}[i%2]}
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Path: "/", HeaderMap: &corev3.HeaderMap{Headers: entries}},
	}}}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := FromCheckRequest(req)
	runtime.ReadMemStats(&after)
	if got := len(r.Headers["x-a"]); got != 3*fields-1 {
		t.Fatalf("joined value is %d bytes, want %d", got, 3*fields-1)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64*3*fields {
		t.Errorf("joining %d fields of one name allocated %d bytes: not linear in their %d bytes", fields, alloc, 3*fields)
	}
}
