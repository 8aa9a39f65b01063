package keystore

import "strings"

// dsnScheme names a DSN in errors by its scheme alone: a mistyped DSN may
// still carry a password, and errors end up in logs.
func dsnScheme(dsn string) string {
	scheme, _, ok := strings.Cut(dsn, ":")
	if !ok || scheme == "" || len(scheme) > 20 {
		return "(unrecognised scheme)"
	}
	for i := 0; i < len(scheme); i++ {
		c := scheme[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return "(unrecognised scheme)"
		}
	}
	return "of scheme " + scheme + ":"
}
