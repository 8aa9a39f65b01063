package policies

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// reflectKey is the memo key as a generic walk of the value gives it: the
// reference appendInput is checked against (TestMemoKeyMatchesReflection).
// A field appendInput forgets, or encodes out of order, makes the two
// differ.
func reflectKey(t testing.TB, b []byte, v reflect.Value) []byte {
	switch v.Kind() {
	case reflect.String:
		return appendString(b, v.String())
	case reflect.Bool:
		return appendBool(b, v.Bool())
	case reflect.Int64:
		return appendInt64(b, v.Int())
	case reflect.Pointer:
		if v.IsNil() {
			return append(b, 'n')
		}
		return reflectKey(t, append(b, 'p'), v.Elem())
	case reflect.Struct:
		b = append(b, '{')
		for i := range v.NumField() {
			b = reflectKey(t, b, v.Field(i))
		}
		return append(b, '}')
	case reflect.Slice:
		if v.IsNil() {
			return append(b, 'n')
		}
		b = binary.AppendUvarint(append(b, '['), uint64(v.Len()))
		for i := range v.Len() {
			b = reflectKey(t, b, v.Index(i))
		}
		return b
	case reflect.Map:
		if v.IsNil() {
			return append(b, 'n')
		}
		b = binary.AppendUvarint(append(b, 'm'), uint64(v.Len()))
		keys := v.MapKeys()
		slices.SortFunc(keys, func(x, y reflect.Value) int { return strings.Compare(x.String(), y.String()) })
		for _, k := range keys {
			b = reflectKey(t, b, k)
			b = reflectKey(t, b, v.MapIndex(k))
		}
		return b
	}
	t.Fatalf("memo key: kind %s: teach appendInput and reflectKey about it", v.Kind())
	return nil
}

// byteSource feeds fill: bytes from a fuzzer or a random generator, zeros
// when they run out.
type byteSource []byte

func (s *byteSource) next() byte {
	if len(*s) == 0 {
		return 0
	}
	c := (*s)[0]
	*s = (*s)[1:]
	return c
}

// fill sets v from src by reflection, so that every field of Input, those
// added later too, gets values: nil and non-nil pointers, slices and maps,
// and short strings over an alphabet of the encoding's own tag bytes, which
// are the likeliest to collide.
func fill(t testing.TB, v reflect.Value, src *byteSource) {
	const alphabet = "sn{}mp1\x00"
	switch v.Kind() {
	case reflect.String:
		s := make([]byte, src.next()%4)
		for i := range s {
			s[i] = alphabet[int(src.next())%len(alphabet)]
		}
		v.SetString(string(s))
	case reflect.Bool:
		v.SetBool(src.next()&1 == 1)
	case reflect.Int64:
		v.SetInt(int64(int8(src.next())))
	case reflect.Pointer:
		if src.next()%4 != 0 {
			v.Set(reflect.New(v.Type().Elem()))
			fill(t, v.Elem(), src)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			fill(t, v.Field(i), src)
		}
	case reflect.Slice:
		if n := int(src.next() % 4); n > 0 {
			v.Set(reflect.MakeSlice(v.Type(), n-1, n-1))
			for i := range n - 1 {
				fill(t, v.Index(i), src)
			}
		}
	case reflect.Map:
		n := int(src.next() % 12) // up to 10 entries: past the 8 sorted on the stack
		if n == 0 {
			return
		}
		v.Set(reflect.MakeMap(v.Type()))
		for range n - 1 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(t, k, src)
			fill(t, e, src)
			v.SetMapIndex(k, e)
		}
	default:
		t.Fatalf("fill: kind %s: teach this test about it", v.Kind())
	}
}

func inputFrom(t testing.TB, src byteSource) Input {
	var in Input
	fill(t, reflect.ValueOf(&in).Elem(), &src)
	return in
}

// TestMemoKeyMatchesReflection: on random inputs, and with every set of
// unread fields, appendInput gives the bytes a reflective walk of the input
// (with the unread fields cleared) gives.
func TestMemoKeyMatchesReflection(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	all := unreadHeaders | unreadQuery | unreadMethod | unreadOrigin | unreadHost | unreadPath | unreadIDs
	for i := range 3000 {
		src := make(byteSource, 400)
		for j := range src {
			src[j] = byte(rng.UintN(256))
		}
		in := inputFrom(t, src)
		unread := unreadFields(i) & all
		cleared := in
		unread.clear(&cleared, new(spareFacts))
		want := reflectKey(t, nil, reflect.ValueOf(cleared))
		if got := appendInput(nil, &in, unread); !bytes.Equal(got, want) {
			t.Fatalf("input %d, unread %06b: appendInput differs from the reflective encoding\n got %q\nwant %q\ninput %+v", i, unread, got, want, in)
		}
	}
}

// FuzzMemoKeyInjective: two inputs share a memo key only if they are the
// same input.
func FuzzMemoKeyInjective(f *testing.F) {
	f.Add([]byte("abc"), []byte("abd"))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9}, []byte{1, 2, 3, 4, 5, 6, 7, 8, 10})
	f.Add(bytes.Repeat([]byte{0xff, 3, 1}, 60), bytes.Repeat([]byte{0xff, 3, 2}, 60))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		x, y := inputFrom(t, a), inputFrom(t, b)
		kx, ky := appendInput(nil, &x, 0), appendInput(nil, &y, 0)
		if bytes.Equal(kx, ky) != reflect.DeepEqual(x, y) {
			t.Fatalf("keys equal = %t, inputs equal = %t\nx %+v\ny %+v", bytes.Equal(kx, ky), reflect.DeepEqual(x, y), x, y)
		}
	})
}

// TestMemoKeyEncodesEveryField fills every field of Input (by reflection,
// so a field added to Input is filled too) and changes each in turn: to
// another value, to nil, by one more element. Every change must change the
// memo key; a field appendInput does not encode fails here.
func TestMemoKeyEncodesEveryField(t *testing.T) {
	var in Input
	populate(reflect.ValueOf(&in).Elem())
	base := string(appendInput(nil, &in, 0))
	changes := 0
	// sync writes a changed copy back where it came from (a map's values
	// are copies); for a field it does nothing.
	var visit func(path string, v reflect.Value, sync func())
	visit = func(path string, v reflect.Value, sync func()) {
		check := func(change string) {
			sync()
			changes++
			if string(appendInput(nil, &in, 0)) == base {
				t.Errorf("%s: %s left the memo key as it was: appendInput does not encode it", path, change)
			}
		}
		switch v.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Map:
			old := reflect.ValueOf(v.Interface())
			v.Set(reflect.Zero(v.Type()))
			check("nil")
			v.Set(old)
			sync()
			switch v.Kind() {
			case reflect.Pointer:
				visit(path, v.Elem(), sync)
			case reflect.Slice:
				v.Set(reflect.Append(old, old.Index(0)))
				check("one more element")
				v.Set(old)
				sync()
				visit(path+"[0]", v.Index(0), sync)
			case reflect.Map:
				k := reflect.ValueOf("k")
				v.SetMapIndex(reflect.ValueOf("added"), old.MapIndex(k))
				check("one more entry")
				v.SetMapIndex(reflect.ValueOf("added"), reflect.Value{})
				e := reflect.New(v.Type().Elem()).Elem()
				e.Set(old.MapIndex(k))
				visit(path+"[k]", e, func() { v.SetMapIndex(k, e); sync() })
			}
		case reflect.Struct:
			for i := range v.NumField() {
				visit(strings.TrimPrefix(path+"."+v.Type().Field(i).Name, "."), v.Field(i), sync)
			}
		case reflect.String:
			v.SetString(v.String() + "x")
			check("a longer string")
			v.SetString(strings.TrimSuffix(v.String(), "x"))
		case reflect.Bool:
			v.SetBool(false)
			check("false")
			v.SetBool(true)
		case reflect.Int64:
			v.SetInt(2)
			check("another number")
			v.SetInt(1)
		default:
			t.Errorf("%s: kind %s: teach appendInput and this test about it", path, v.Kind())
		}
		sync()
	}
	visit("", reflect.ValueOf(&in).Elem(), func() {})
	if changes < 60 {
		t.Fatalf("only %d changes made", changes)
	}
	if got := string(appendInput(nil, &in, 0)); got != base {
		t.Fatal("the walk did not put every field back")
	}
}

// populate sets every field of v to something other than its zero value:
// pointers point, slices hold one element, maps one entry under "k".
func populate(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString("v")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int64:
		v.SetInt(1)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		populate(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			populate(v.Field(i))
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		populate(v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		e := reflect.New(v.Type().Elem()).Elem()
		populate(e)
		v.SetMapIndex(reflect.ValueOf("k"), e)
	}
}

// TestUnreadBits: every ignorable field has a bit of its own, and clearing
// by a set of bits zeroes exactly the fields of that set (what DecideMemo
// and the memo key rely on), whatever else the set holds.
func TestUnreadBits(t *testing.T) {
	seen := unreadFields(0)
	for _, f := range ignorable {
		if f.bit == 0 || f.bit&(f.bit-1) != 0 || seen&f.bit != 0 {
			t.Errorf("%v: bits %06b: want one field of its own", f.path, f.bit)
		}
		seen |= f.bit
	}
	// zeroed follows path through in's fields (input.key.id: Key.ID).
	zeroed := func(in Input, path []string) bool {
		v := reflect.ValueOf(in)
		for _, name := range path {
			if v.Kind() == reflect.Pointer {
				v = v.Elem()
			}
			v = v.FieldByNameFunc(func(n string) bool { return strings.EqualFold(n, name) })
			if !v.IsValid() {
				t.Fatalf("%v: no such field", path)
			}
		}
		return v.IsZero()
	}
	for set := range unreadFields(1 << len(ignorable)) {
		in := fullInput()
		before := fullInput()
		set.clear(&in, new(spareFacts))
		for _, f := range ignorable {
			if want := set&f.bit != 0; zeroed(in, f.path) != want {
				t.Errorf("set %011b: %v zeroed %v, want %v", set, f.path, !want, want)
			}
		}
		// The facts in points to are the key cache's: clear copies them.
		if set != 0 && !reflect.DeepEqual(before, fullInput()) {
			t.Fatalf("set %011b: fullInput changed", set)
		}
	}
}

// TestClearLeavesFactsAlone: clearing an input's ids zeroes copies, never the
// key, site or account the input points to (the key cache's, shared by every
// request of that key).
func TestClearLeavesFactsAlone(t *testing.T) {
	in := fullInput()
	key, site, account := *in.Key, *in.Site, *in.Account
	cleared := in
	unreadIDs.clear(&cleared, new(spareFacts))
	if !reflect.DeepEqual(*in.Key, key) || !reflect.DeepEqual(*in.Site, site) || !reflect.DeepEqual(*in.Account, account) {
		t.Fatalf("clear wrote through to the facts: %+v %+v %+v", in.Key, in.Site, in.Account)
	}
	if cleared.Key.ID != "" || cleared.Key.Name != "" || cleared.Site.ID != "" || cleared.Account.ID != "" {
		t.Fatalf("ids left in: %+v %+v %+v", cleared.Key, cleared.Site, cleared.Account)
	}
	if cleared.Key.Mode != key.Mode || cleared.Account.Plan != account.Plan || cleared.Site.Limits["rate"] != site.Limits["rate"] {
		t.Fatalf("facts lost: %+v %+v %+v", cleared.Key, cleared.Site, cleared.Account)
	}
}

// TestMemoHitAllocatesNothing: a memo hit allocates nothing of its own, the
// input's classified copy included (it stays on the stack: DecideMemo clears
// unread fields by a bit set, not through funcs it cannot see into). The
// bound is below one allocation per decision, not zero, so that a pool
// emptied by a collection mid-run does not fail the test.
func TestMemoHitAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops pooled scratch at random: allocation counts are meaningless under -race")
	}
	p := defaultPolicy(t)
	in := fullInput()
	in.Request.Path = "/v1/videos/vid_1"
	ctx := context.Background()
	if _, res, err := p.DecideMemo(ctx, &in); err != nil || res != MemoMiss {
		t.Fatalf("first decision: %v, %v", res, err)
	}
	if allocs := testing.AllocsPerRun(200, func() {
		if _, res, _ := p.DecideMemo(ctx, &in); res != MemoHit {
			t.Fatalf("not a memo hit: %v", res)
		}
	}); allocs >= 1 {
		t.Errorf("a memo hit allocates %.2f times", allocs)
	}
}
