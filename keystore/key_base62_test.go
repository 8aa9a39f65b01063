package keystore

import (
	"strings"
	"testing"
)

// TestIsBase62 agrees with the alphabet for every byte.
func TestIsBase62(t *testing.T) {
	for c := range 256 {
		if got, want := isBase62(byte(c)), strings.IndexByte(base62, byte(c)) >= 0; got != want {
			t.Errorf("isBase62(%q) = %t, want %t", byte(c), got, want)
		}
	}
}

// TestLooks: the prefix, then a mode, then an underscore.
func TestLooks(t *testing.T) {
	f := Format{Prefix: "kg"}
	for raw, want := range map[string]bool{"kg_live_x": true, "kg_test_": true, "kg_prod_x": false, "kglive_x": false,
		"xkg_live_x": false, "kg_live": false, "kg_test_x": true, "": false, "kg__live_": false} {
		if got := f.Looks(raw); got != want {
			t.Errorf("Looks(%q) = %t, want %t", raw, got, want)
		}
	}
}
