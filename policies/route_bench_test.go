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

// BenchmarkDecideMiss is a memo miss on every decision: each comes from
// another key, so the built-in policy is evaluated (and remembered).
func BenchmarkDecideMiss(b *testing.B) {
	e := engineFor(b, Default())
	in := proInput()
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = "key_" + strconv.Itoa(i)
	}
	benchDecideEach(b, e, func(i int) *Input {
		in.Key.ID = ids[i%len(ids)]
		return in
	})
	if s := e.MemoStats(); s.Hits > s.Misses/100 {
		b.Fatalf("not measuring misses: %+v", s)
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
