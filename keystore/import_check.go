package keystore

import (
	"errors"
	"strings"
)

// presentable refuses an imported key that no request could ever carry to
// a lookup, so that `keys import` fails loudly instead of storing a key
// that is then refused forever:
//   - ',' : proxies join repeated headers with commas, so keygate splits
//     credential headers on them;
//   - ':' : Basic credentials end the username at the first colon;
//   - the shape of a keygate key with a wrong checksum: refused offline as
//     malformed, before any lookup.
func (f Format) presentable(raw string) error {
	switch {
	case strings.Contains(raw, ","):
		return errors.New("it contains ',' (a credential header value is split on commas)")
	case strings.Contains(raw, ":"):
		return errors.New("it contains ':' (Basic credentials end the username at a colon)")
	case f.Looks(raw):
		if _, err := f.Parse(raw); err != nil {
			return errors.New("it has the shape of a keygate key but not its checksum, so it is refused before any lookup")
		}
	}
	return nil
}
