package policies

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkDecideDistinctIDs decides requests that differ only in an id in
// the path (/v1/videos/vid_N), as real API traffic does: with the path
// classified by the policy's data they are memo hits.
func BenchmarkDecideDistinctIDs(b *testing.B) {
	e := engineFor(b, Default())
	in := proInput()
	paths := make([]string, 4096)
	for i := range paths {
		paths[i] = "/v1/videos/vid_" + strconv.Itoa(i)
	}
	benchDecideEach(b, e, func(i int) *Input {
		in.Request.Path = paths[i%len(paths)]
		return in
	})
}

// BenchmarkDecideMiss is a memo miss on every decision: each comes with
// another Host (which the built-in policy reads: config.host_modes), so the
// policy is evaluated (and remembered). Another key would not do: the
// built-in policy reads no id, and keys with the same facts share a
// decision (BenchmarkDecideOtherKeys).
func BenchmarkDecideMiss(b *testing.B) {
	e := engineFor(b, Default())
	in := proInput()
	hosts := make([]string, 1<<16)
	for i := range hosts {
		hosts[i] = "api-" + strconv.Itoa(i) + ".example.test"
	}
	benchDecideEach(b, e, func(i int) *Input {
		in.Request.Host = hosts[i%len(hosts)]
		return in
	})
	if s := e.MemoStats(); s.Hits > s.Misses/100 {
		b.Fatalf("not measuring misses: %+v", s)
	}
}

// BenchmarkDecideMissUses is a memo miss on every decision from a key with
// uses left (input.key.remaining), which is new facts on every request:
// the key's facts are new to the cache of input parts too, its request,
// site and account are not.
func BenchmarkDecideMissUses(b *testing.B) {
	e := engineFor(b, Default())
	in := proInput()
	remaining := make([]int64, 1<<16)
	for i := range remaining {
		remaining[i] = int64(len(remaining) - i)
	}
	benchDecideEach(b, e, func(i int) *Input {
		in.Key.Remaining = &remaining[i%len(remaining)]
		return in
	})
	if s := e.MemoStats(); s.Hits > s.Misses/100 {
		b.Fatalf("not measuring misses: %+v", s)
	}
}

// BenchmarkDecideMissNew is a memo miss on every decision whose host and
// key facts are both new: the request and the key's facts miss the cache
// of input parts (the site and account do not), what its lookups cost
// when they find nothing.
func BenchmarkDecideMissNew(b *testing.B) {
	e := engineFor(b, Default())
	in := proInput()
	hosts := make([]string, 1<<16)
	remaining := make([]int64, len(hosts))
	for i := range hosts {
		hosts[i] = "api-" + strconv.Itoa(i) + ".example.test"
		remaining[i] = int64(len(remaining) - i)
	}
	benchDecideEach(b, e, func(i int) *Input {
		in.Request.Host = hosts[i%len(hosts)]
		in.Key.Remaining = &remaining[i%len(remaining)]
		return in
	})
	if s := e.MemoStats(); s.Hits > s.Misses/100 {
		b.Fatalf("not measuring misses: %+v", s)
	}
}

// BenchmarkDecideOtherKeys is every decision from another key, site and
// account with the same facts: memo hits after the first.
func BenchmarkDecideOtherKeys(b *testing.B) {
	e := engineFor(b, Default())
	ins := make([]*Input, 1<<12)
	for i := range ins {
		in := proInput()
		n := strconv.Itoa(i)
		in.Key.ID, in.Site.ID, in.Account.ID, in.Site.Account = "key_"+n, "site-"+n, "acct-"+n, "acct-"+n
		ins[i] = in
	}
	benchDecideEach(b, e, func(i int) *Input { return ins[i%len(ins)] })
	if s := e.MemoStats(); s.Misses > 1 {
		b.Fatalf("keys with the same facts missed: %+v", s)
	}
}

func benchDecideEach(b *testing.B, e *Engine, next func(i int) *Input) {
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if d, err := e.Decide(ctx, next(i)); err != nil || !d.Allow {
			b.Fatal(d, err)
		}
	}
}
