// Package storetest opens the store that a package's tests run against: a
// fresh SQLite file in the test's temporary directory, closed when the test
// ends. Only tests import it; the store suite itself (keystore) runs on
// every backend and opens its own.
package storetest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// sealSecret seals the webhook signing secrets of stores opened here: a
// store keeps them only sealed, under a secret that is not in the store.
const sealSecret = "storetest-seal-secret-0123456789"

// Open opens a fresh store with keygate's "kg" key format and returns it
// with its digester. now, when not nil, is the store's clock.
func Open(t testing.TB, now func() time.Time) (*keystore.Store, *keystore.Digester) {
	t.Helper()
	format, _ := keystore.NewFormat("kg") // a valid prefix: no error
	d, err := keystore.NewDigester()
	if err == nil {
		d, err = d.WithSealSecret([]byte(sealSecret))
	}
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "k.db")
	st, err := keystore.Open(context.Background(), "sqlite:"+path, keystore.Options{Format: format, Digester: d, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, d
}
