package keystore

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// TestIDIndexAgainstMap: random puts, drops and lookups agree with a Go map
// through growth and backward-shift deletion (a small id space makes long
// probe runs and wrap-around at the table's end common).
func TestIDIndexAgainstMap(t *testing.T) {
	ids := map[*slotHead]string{}
	x := newIDIndex(func(h *slotHead) string { return ids[h] })
	want := map[string]*slotHead{}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 200_000 {
		id := "key_" + strconv.Itoa(rng.IntN(3000))
		switch op := rng.IntN(10); {
		case op < 5:
			h := new(slotHead)
			ids[h] = id
			x.put(h)
			want[id] = h
		case op < 7:
			x.dropID(id)
			delete(want, id)
		case op < 8:
			if h := want[id]; h != nil && rng.IntN(2) == 0 {
				x.drop(h)
				delete(want, id)
			} else {
				x.drop(&slotHead{}) // not indexed: no effect
			}
		default:
			if h, ok := x.get(id); h != want[id] || ok != (want[id] != nil) {
				t.Fatalf("step %d: get(%s) = %p, %v; want %p", step, id, h, ok, want[id])
			}
		}
		if x.len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, x.len(), len(want))
		}
	}
	for id, h := range want {
		if got, ok := x.get(id); !ok || got != h {
			t.Fatalf("get(%s) = %p, %v; want %p", id, got, ok, h)
		}
	}
}
