package keystore

import "strconv"

// flightKey names a cache fill of entry ck begun at generation gen.
func flightKey(ck string, gen uint64) string {
	return ck + "@" + strconv.FormatUint(gen, 10)
}
