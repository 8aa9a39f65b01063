package irvm

// ReadsClock reports whether OPA's builtin name reads the wall clock
// although OPA does not flag it non-deterministic: its answer for the same
// arguments changes with time, so it must never be computed once and kept
// (a folded constant, a remembered decision). In OPA v1.22 these are the
// certificate verifications: crypto/x509's Verify checks validity against
// time.Now unless given a time. Every other builtin that reads the time
// (time.now_ns, io.jwt.decode_verify, http.send) is flagged
// non-deterministic. Re-check this list on every OPA upgrade: grep
// v1/topdown for time.Now, bctx.Time and Verify(.
func ReadsClock(name string) bool {
	switch name {
	case "crypto.x509.parse_and_verify_certificates", "crypto.x509.parse_and_verify_certificates_with_options":
		return true
	}
	return false
}
