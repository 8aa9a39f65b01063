package main

import (
	"regexp"
	"strings"
	"testing"
)

// validTokenName accepts exactly what the rule's regexp does.
func TestValidTokenName(t *testing.T) {
	rule := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	names := []string{"", "a", "A9", "ci-bot", "ops@example.com", "x.y_z", "-a", ".a", "@a", "_a", "a b", "a:b", "a,b",
		"é", "aé", "a\x00", "a\n", strings.Repeat("a", 64), strings.Repeat("a", 65), "a" + strings.Repeat("-", 63), "a" + strings.Repeat("-", 64)}
	for c := 0; c < 256; c++ {
		names = append(names, string([]byte{byte(c)}), "a"+string([]byte{byte(c)}))
	}
	for _, name := range names {
		if got, want := validTokenName(name), rule.MatchString(name); got != want {
			t.Errorf("validTokenName(%q) = %v, want %v", name, got, want)
		}
	}
}
