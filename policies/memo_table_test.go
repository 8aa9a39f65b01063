package policies

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// keyedDecision is a decision shaped like the built-in policy's: headers
// every key of a plan shares, a rate limit of the key's own.
func keyedDecision(i int) Decision {
	return Decision{Allow: true, Status: 200, Rule: "key_route",
		Headers: map[string]string{"x-keygate-concurrency": "3"}, ResponseHeaders: map[string]string{},
		Limits: []Limit{{Kind: "rate", Key: "key:key_" + strconv.Itoa(i) + ":live", Limit: 5, Code: "RATE_LIMITED"}}}
}

// memoKey is a 200-byte key, as long as the built-in policy's for a key
// route.
func memoKey(i int) *memoScratch {
	k := fmt.Sprintf("key_%020d", i)
	return &memoScratch{key: []byte(k + strings.Repeat("x", 200-len(k)))}
}

// TestMemoHoldsTensOfThousands: the default budget holds the decisions of
// 50,000 keys (the memo held 10,000 whatever their size).
func TestMemoHoldsTensOfThousands(t *testing.T) {
	m := newMemo(context.Background(), nil, nil, nil)
	const keys = 50_000
	for i := range keys {
		m.put(memoKey(i), keyedDecision(i))
	}
	if n, bytes, evictions := m.table.stats(); n != keys || evictions != 0 {
		t.Fatalf("%d of %d entries held (%d bytes, %d evictions)", n, keys, bytes, evictions)
	}
	for _, i := range []int{0, keys / 2, keys - 1} {
		got, ok := m.table.lookup(memoKey(i).key)
		if !ok || !reflect.DeepEqual(got, keyedDecision(i)) {
			t.Fatalf("key %d: %v %+v", i, ok, got)
		}
	}
}

// TestMemoKeepsHotEntries: a key hit between every put of a key seen once
// survives however many such puts overflow the budget (the memo evicted a
// random entry, the hot one among them).
func TestMemoKeepsHotEntries(t *testing.T) {
	m := newMemo(context.Background(), nil, nil, nil)
	m.table.budget = 1 << 20 // ~1,500 entries
	hot := memoKey(-1)
	m.put(hot, keyedDecision(-1))
	for i := range 60_000 {
		if _, ok := m.table.lookup(hot.key); !ok {
			t.Fatalf("the hot entry was evicted after %d puts", i)
		}
		m.put(memoKey(i), keyedDecision(i))
	}
	if _, _, evictions := m.table.stats(); evictions < 50_000 {
		t.Fatalf("%d evictions: the budget did not bind", evictions)
	}
}

// TestMemoInterns: entries with equal headers share one map, and what put
// keeps shares nothing with the decision it was given (the caller of a
// miss owns that one).
func TestMemoInterns(t *testing.T) {
	m := newMemo(context.Background(), nil, nil, nil)
	given := keyedDecision(1)
	m.put(memoKey(1), given)
	m.put(memoKey(2), keyedDecision(2))
	one, _ := m.table.lookup(memoKey(1).key)
	two, _ := m.table.lookup(memoKey(2).key)
	if reflect.ValueOf(one.Headers).UnsafePointer() != reflect.ValueOf(two.Headers).UnsafePointer() {
		t.Error("equal headers are kept twice")
	}
	given.Headers["x-keygate-concurrency"], given.Limits[0].Key = "changed", "changed"
	if !reflect.DeepEqual(one, keyedDecision(1)) {
		t.Errorf("the memo's entry changed with the caller's decision: %+v", one)
	}
}

// TestMemoOwnsPastInternBudget: past the interner's budget an entry keeps
// copies of its own headers and body, never the caller's (put copies them
// only when it keeps them).
func TestMemoOwnsPastInternBudget(t *testing.T) {
	m := newMemo(context.Background(), nil, nil, nil)
	m.table.index = map[string]int32{} // made: the interner keeps its budget, 0
	given := keyedDecision(1)
	given.Allow, given.Status, given.Body = false, 403, []byte(`{"code":"NO"}`)
	m.put(memoKey(1), given)
	if len(m.table.intern.maps) != 0 || len(m.table.intern.bodies) != 0 {
		t.Fatal("the headers or body were interned: the test does not test the copies")
	}
	given.Headers["x-keygate-concurrency"], given.Body[2] = "changed", 'X'
	got, ok := m.table.lookup(memoKey(1).key)
	if !ok || got.Headers["x-keygate-concurrency"] != "3" || string(got.Body) != `{"code":"NO"}` {
		t.Errorf("the memo's entry changed with the caller's decision: %v %+v", ok, got)
	}
}

// TestMemoInternBounded: a policy whose headers differ for every key fills
// the interner's budget, then keeps headers per entry; all stays within the
// budget and every entry is its own decision.
func TestMemoInternBounded(t *testing.T) {
	m := newMemo(context.Background(), nil, nil, nil)
	m.table.budget = 1 << 20
	for i := range 20_000 {
		d := keyedDecision(i)
		d.Headers = map[string]string{"x-key": strconv.Itoa(i)}
		m.put(memoKey(i), d)
		if _, bytes, _ := m.table.stats(); bytes > m.table.budget {
			t.Fatalf("after %d puts: %d bytes, budget %d", i+1, bytes, m.table.budget)
		}
	}
	if m.table.intern.bytes > m.table.budget/8 {
		t.Errorf("interned %d bytes, budget %d", m.table.intern.bytes, m.table.budget/8)
	}
	got, ok := m.table.lookup(memoKey(19_999).key)
	if !ok || got.Headers["x-key"] != "19999" {
		t.Fatalf("last entry: %v %v", ok, got.Headers)
	}
}

// TestMemoEvictsConcurrently: lookups marking entries while puts evict
// them (run with -race).
func TestMemoEvictsConcurrently(t *testing.T) {
	m := newMemo(context.Background(), nil, nil, nil)
	m.table.budget = 64 << 10
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2_000 {
				k := (g*7 + i) % 500
				if d, ok := m.table.lookup(memoKey(k).key); ok && d.Limits[0].Key != keyedDecision(k).Limits[0].Key {
					t.Errorf("key %d: decision of %s", k, d.Limits[0].Key)
					return
				}
				m.put(memoKey(k), keyedDecision(k))
			}
		})
	}
	wg.Wait()
	if _, bytes, _ := m.table.stats(); bytes > m.table.budget {
		t.Fatalf("%d bytes, budget %d", bytes, m.table.budget)
	}
}

// TestMemoStatsSize: the engine reports what its policy's memo holds, and
// a reload's new memo starts empty.
func TestMemoStatsSize(t *testing.T) {
	e := NewEngine(defaultPolicy(t))
	for _, in := range distinctKeyInputs(3) {
		if _, err := e.Decide(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
	if s := e.MemoStats(); s.Entries != 3 || s.Bytes <= 0 || s.Bytes > defaultMemoBudget || s.Evictions != 0 {
		t.Fatalf("after 3 keys: %+v", s)
	}
	e.Swap(defaultPolicy(t))
	if s := e.MemoStats(); s.Entries != 0 || s.Bytes != 0 || s.Misses != 3 {
		t.Fatalf("after a reload: %+v", s)
	}
}

// TestDecisionShape: decisionShape holds every field of Decision but its
// limits, so that two decisions that differ anywhere else never share a
// shape.
func TestDecisionShape(t *testing.T) {
	var want, got []string
	for f := range reflect.TypeFor[Decision]().Fields() {
		if f.Name != "Limits" {
			want = append(want, strings.ToLower(f.Name))
		}
	}
	for f := range reflect.TypeFor[decisionShape]().Fields() {
		if f.Name != "hasBody" {
			got = append(got, strings.ToLower(f.Name))
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Fatalf("decisionShape holds %v, Decision has %v", got, want)
	}
}

// TestMemoTooLargeEvictsNothing: an entry larger than the budget is not
// remembered, and does not empty the memo trying to make room for it.
func TestMemoTooLargeEvictsNothing(t *testing.T) {
	m := newMemo(context.Background(), nil, nil, nil)
	m.table.budget = 64 << 10
	for i := range 10 {
		m.put(memoKey(i), keyedDecision(i))
	}
	huge := keyedDecision(-1)
	huge.Headers = map[string]string{}
	for i := range 32 {
		huge.Headers["x-h"+strconv.Itoa(i)] = strings.Repeat("v", 4096)
	}
	m.put(memoKey(-1), huge)
	if n, _, evictions := m.table.stats(); n != 10 || evictions != 0 {
		t.Fatalf("%d entries, %d evictions after a put larger than the budget", n, evictions)
	}
}

// TestMemoEvictionBounded: in a full memo (~2,500 entries) every entry of
// which was hit since the hand passed, a put spares (and unmarks) a few of
// them (sweepBound, less than a sixteenth here) before it evicts one,
// instead of sweeping the whole table under the write lock; put after put
// the table stays within its budget and evicts.
func TestMemoEvictionBounded(t *testing.T) {
	tb := &memoTable{budget: 1 << 20}
	key := func(i int) []byte { return memoKey(100_000 + i).key } // sizes alike
	held := 0
	for i := 0; ; i++ {
		tb.add(key(i), keyedDecision(100_000+i))
		n, _, _ := tb.stats()
		if n == held {
			break
		}
		held = n
	}
	if held < 2_000 {
		t.Fatalf("%d entries: the table is too small to tell", held)
	}
	for i := range 200 {
		for j := range tb.slots {
			if tb.slots[j].size != 0 {
				tb.lookup([]byte(tb.slots[j].key))
			}
		}
		_, _, before := tb.stats()
		tb.add(key(held+1+i), keyedDecision(100_000+held+1+i))
		unmarked := 0
		for j := range tb.slots {
			if tb.slots[j].size != 0 && !tb.slots[j].used.Load() {
				unmarked++
			}
		}
		n, bytes, after := tb.stats()
		if after == before || bytes > tb.budget || n < held-2 {
			t.Fatalf("put %d: %d evictions, %d bytes (budget %d), %d entries of %d", i, after-before, bytes, tb.budget, n, held)
		}
		// The new entry is unmarked, and the ones the hand spared.
		if unmarked > 1+int(after-before)*held/16 {
			t.Fatalf("put %d: %d of %d entries unmarked by %d evictions; want at most %d an eviction", i, unmarked, n, after-before, held/16)
		}
	}
}
