package extauthz

import (
	"slices"
	"strconv"
	"testing"
)

// TestSortByName sorts small and large header sets alike.
func TestSortByName(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 16, 17, 40} {
		var kv [][2]string
		for i := range n {
			kv = append(kv, [2]string{"h-" + strconv.Itoa((i*7919)%101), strconv.Itoa(i)})
		}
		sortByName(kv)
		if !slices.IsSortedFunc(kv, func(a, b [2]string) int {
			if a[0] < b[0] {
				return -1
			}
			if a[0] > b[0] {
				return 1
			}
			return 0
		}) {
			t.Errorf("n=%d: not sorted: %v", n, kv)
		}
	}
}
