package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// defaultStore is the embedded store in the current directory.
const defaultStore = "sqlite:keygate.db"

// storeFlags are shared by every command that opens the store.
type storeFlags struct {
	store     string
	keyPrefix string
}

func (s *storeFlags) register(fs *flagSet) {
	fs.StringVar(&s.store, "store", defaultStore, "store: sqlite:PATH or postgres://…")
	fs.StringVar(&s.keyPrefix, "key-prefix", "kg", "prefix of generated keys (<prefix>_<live|test>_…)")
}

// keyTools builds the key format and digester from flags and KEYGATE_PEPPER
// (comma-separated, newest first; never a flag, so it stays out of ps).
func (e *environment) keyTools(s storeFlags) (keystore.Format, *keystore.Digester, error) {
	format, err := keystore.NewFormat(s.keyPrefix)
	if err != nil {
		return keystore.Format{}, nil, fmt.Errorf("%w: --key-prefix: %v", errUsage, err)
	}
	var peppers [][]byte
	if p := e.getenv("KEYGATE_PEPPER"); p != "" {
		for _, v := range strings.Split(p, ",") {
			peppers = append(peppers, []byte(v))
		}
	}
	d, err := keystore.NewDigester(peppers...)
	if err != nil {
		return keystore.Format{}, nil, fmt.Errorf("KEYGATE_PEPPER: %w", err)
	}
	return format, d, nil
}

// openStore opens the store of a management command (or check). It never
// creates a database: only serve does, so that a command run in the wrong
// directory says so instead of working on a new, empty store.
func (e *environment) openStore(ctx context.Context, s storeFlags) (*keystore.Store, error) {
	if err := mustExist(s.store); err != nil {
		return nil, err
	}
	return e.openOrCreate(ctx, s)
}

// openOrCreate opens the store, creating and migrating it when needed.
func (e *environment) openOrCreate(ctx context.Context, s storeFlags) (*keystore.Store, error) {
	format, digester, err := e.keyTools(s)
	if err != nil {
		return nil, err
	}
	// The token secret seals signing keys and webhook secrets. For SQLite it
	// is a 0600 file beside the database (which exists by now: only serve
	// creates databases); whichever process needs it first creates it.
	if digester, err = e.withTokenSecret(s.store, digester, true); err != nil {
		return nil, err
	}
	st, err := keystore.Open(ctx, s.store, keystore.Options{Format: format, Digester: digester})
	if err != nil {
		return nil, fmt.Errorf("opening the store %s: %w", storeKind(s.store), plain{err})
	}
	return st, nil
}

// mustExist refuses a SQLite path that holds no database yet.
func mustExist(dsn string) error {
	file, ok := strings.CutPrefix(dsn, "sqlite:")
	if !ok {
		return nil
	}
	_, err := os.Stat(file)
	if err == nil {
		return nil
	}
	shown := file
	if !filepath.IsAbs(file) && !strings.HasPrefix(file, ".") {
		shown = "./" + file
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no keygate database at %s; start keygate serve here or pass --store (or KEYGATE_STORE) naming the server's database", shown)
	}
	return fmt.Errorf("cannot read the keygate database at %s: %v", shown, err)
}

// storeKind names the store without its credentials.
func storeKind(dsn string) string {
	if strings.HasPrefix(dsn, "sqlite:") {
		return dsn
	}
	return "postgres"
}

// closeInto closes c and keeps the first error.
func closeInto(err *error, c io.Closer) {
	if cerr := c.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}

// plain is an error said without the packages' "keystore: " markers, which
// help logs but repeat themselves in a one-line message.
type plain struct{ err error }

func (p plain) Error() string { return strings.ReplaceAll(p.err.Error(), "keystore: ", "") }
func (p plain) Unwrap() error { return p.err }
