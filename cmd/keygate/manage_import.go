package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// importKey reads one key from stdin (never a flag, so it stays out of ps
// and shell history) and stores its digest for the site.
func (e environment) importKey(ctx context.Context, st *keystore.Store, site, mode, name, expires string, asJSON bool) error {
	spec, err := keySpec(site, mode, name, expires)
	if err != nil {
		return err
	}
	line, err := bufio.NewReader(io.LimitReader(e.stdin, keystore.MaxKeyLen+2)).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("keys import: reading stdin: %w", err)
	}
	raw := strings.TrimRight(line, "\r\n")
	if raw == "" {
		return fmt.Errorf("keys import: pipe the key on stdin, e.g. printf %%s \"$OLD_KEY\" | keygate keys import --site ID --mode live")
	}
	key, err := st.ImportKey(ctx, spec, raw)
	if err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(key)
	}
	fmt.Fprintf(e.stdout, "imported key %s (%s) for site %s\n", key.ID, key.Mode, key.SiteID)
	return nil
}
