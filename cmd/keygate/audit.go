package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
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

// validTokenName reports whether name may name an admin token (it appears
// in the audit trail as admin:<name>): a letter or digit, then up to 63
// letters, digits, '.', '_', '@' or '-'. A loop, not a regexp: every
// process would compile the regexp at start-up (0.36 M instructions, for
// the counted repetition) to check a variable few set.
func validTokenName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._@-", rune(c))) {
			return false
		}
	}
	return true
}

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
		case !ok || !validTokenName(name):
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
