package extauthz

import (
	"testing"

	"github.com/keygate/keygate/keystore"
)

// newLiveKey returns keygate's "kg" key format and a digester, as serve
// builds them, and a live key generated in that format.
func newLiveKey(tb testing.TB) (keystore.Format, *keystore.Digester, keystore.Secret) {
	tb.Helper()
	format, _ := keystore.NewFormat("kg") // a valid prefix: no error
	digester, err := keystore.NewDigester()
	if err != nil {
		tb.Fatal(err)
	}
	key, err := format.Generate(keystore.ModeLive)
	if err != nil {
		tb.Fatal(err)
	}
	return format, digester, key
}
