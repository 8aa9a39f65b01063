// Package ascii folds the case of ASCII letters and nothing else.
//
// Names on the wire (hosts, header names, auth schemes, route prefixes,
// role names) are ASCII, and the peers keygate guards compare them
// byte-wise or ASCII-case-insensitively. Go's strings.ToLower and
// strings.EqualFold also fold Unicode letters into ASCII ones (U+212A
// KELVIN SIGN to "k", U+0130 to "i", U+017F LONG S to "s"), so a name a
// peer tells apart would reach keygate as the one it guards.
package ascii

// Lower lower-cases the ASCII letters of s and nothing else; s is returned
// as is (no allocation) when it has no upper-case ASCII letter.
func Lower(s string) string {
	i := 0
	for i < len(s) && !isUpper(s[i]) {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if isUpper(b[i]) {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

// EqualFold reports whether a and b are equal when ASCII letters are
// compared without case; every other byte must match exactly.
func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }

func lower(c byte) byte {
	if isUpper(c) {
		return c + 'a' - 'A'
	}
	return c
}
