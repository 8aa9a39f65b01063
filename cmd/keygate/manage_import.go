package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
)

// keyImport stores the digest of a key issued by an older system. The key
// is read from stdin (never a flag, so it stays out of ps and shell
// history).
func (e *environment) keyImport() *cobra.Command {
	var sf storeFlags
	var kf keyFlags
	c, fs := e.newLeaf("import", "import a key from an older system (read from stdin)", e.noArgs, func(ctx context.Context, _ []string) error {
		spec, err := kf.spec()
		if err != nil {
			return err
		}
		line, err := bufio.NewReader(io.LimitReader(e.stdin, keystore.MaxKeyLen+2)).ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("keys import: reading stdin: %w", err)
		}
		raw := strings.TrimRight(line, "\r\n")
		if raw == "" {
			return fmt.Errorf("%w: keys import: pipe the key on stdin, e.g. printf %%s \"$OLD_KEY\" | keygate keys import --site ID --mode live", errUsage)
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			key, err := st.ImportKey(ctx, spec, raw)
			if err != nil {
				return storeError(err, "site", spec.SiteID)
			}
			if kf.asJSON {
				return e.printJSON(key)
			}
			fmt.Fprintf(e.stdout, "imported key %s (%s) for site %s; serve with --imported-keys to accept it\n", key.ID, key.Mode, key.SiteID)
			return nil
		})
	})
	sf.register(fs)
	kf.register(fs)
	return c
}
