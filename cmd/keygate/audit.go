package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// auditCommand is `keygate audit [--target ID] [--after SEQ] [--limit N]
// [--json]`: the audit trail of writes.
func (e *environment) auditCommand() *cobra.Command {
	var sf storeFlags
	var target string
	var after int64
	var limit int
	var asJSON bool
	c, fs := e.newLeaf("audit", "who changed what: the audit trail of writes, oldest first", e.noArgs,
		func(ctx context.Context, _ []string) error {
			if limit < 1 || limit > keystore.MaxAuditPage {
				return fmt.Errorf("%w: audit: --limit must be between 1 and %d", errUsage, keystore.MaxAuditPage)
			}
			return e.withStore(ctx, sf, func(st *keystore.Store) error { return e.audit(ctx, st, target, after, limit, asJSON) })
		})
	sf.register(fs)
	fs.StringVar(&target, "target", "", "only changes to this account, site or key id")
	fs.Int64Var(&after, "after", 0, "only entries after this sequence number (the next of a previous page)")
	fs.IntVar(&limit, "limit", 100, fmt.Sprintf("at most this many entries (1 to %d)", keystore.MaxAuditPage))
	fs.BoolVar(&asJSON, "json", false, `print JSON ({"entries":[…],"next":…}, as GET /admin/v1/audit)`)
	return c
}

func (e *environment) audit(ctx context.Context, st *keystore.Store, target string, after int64, limit int, asJSON bool) error {
	entries, err := st.Audit(ctx, target, after, limit)
	if err != nil {
		return err
	}
	page := admin.AuditPage{Entries: entries}
	if page.Entries == nil {
		page.Entries = []keystore.AuditEntry{}
	}
	if len(entries) == limit {
		page.Next = fmt.Sprint(entries[len(entries)-1].Seq)
	}
	return e.output(asJSON, page, func(w io.Writer) {
		fmt.Fprintln(w, "SEQ\tTIME\tACTOR\tACTION\tENTITY\tTARGET\tAFTER")
		for _, a := range entries {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Seq, a.At.Format(time.RFC3339), a.Actor, a.Action, a.Entity, a.Target, a.After)
		}
	})
}

// cliActor names the person behind a management command in the audit
// trail: cli:<os user>@<host>.
func cliActor(getenv func(string) string) string {
	name := getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return "cli:" + firstNonEmpty(name, "unknown") + "@" + firstNonEmpty(host, "unknown")
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// tokenNamePattern is what a named admin token's name may look like (it
// appears in the audit trail as admin:<name>).
var tokenNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// adminTokens reads KEYGATE_ADMIN_TOKENS, comma-separated name:token pairs
// (several named admin tokens, each audited by name). Like
// KEYGATE_ADMIN_TOKEN it is never a flag, so tokens stay out of ps.
func adminTokens(getenv func(string) string) (map[string]string, error) {
	raw := getenv("KEYGATE_ADMIN_TOKENS")
	if raw == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, pair := range strings.Split(raw, ",") {
		name, token, ok := strings.Cut(strings.TrimSpace(pair), ":")
		switch {
		case !ok || !tokenNamePattern.MatchString(name):
			// Say which entry, never its token.
			return nil, fmt.Errorf("KEYGATE_ADMIN_TOKENS: each entry is name:token with a name of letters, digits, . _ @ - (entry %d)", len(out)+1)
		case len(token) < 16:
			return nil, fmt.Errorf("KEYGATE_ADMIN_TOKENS: the token of %q must be at least 16 characters", name)
		case out[name] != "" || name == "admin":
			return nil, fmt.Errorf("KEYGATE_ADMIN_TOKENS: %q named twice (\"admin\" is KEYGATE_ADMIN_TOKEN's name)", name)
		}
		out[name] = token
	}
	return out, nil
}
