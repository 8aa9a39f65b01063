package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// audit prints the audit trail of writes: `keygate audit [--target ID]
// [--after SEQ] [--limit N] [--json]`.
func (e environment) audit(ctx context.Context, args []string) (err error) {
	fs := e.flags("audit")
	var sf storeFlags
	sf.register(fs)
	target := fs.String("target", "", "only changes to this account, site or key id")
	after := fs.Int64("after", 0, "only entries after this sequence number (the next of a previous page)")
	limit := fs.Int("limit", 100, fmt.Sprintf("at most this many entries (1 to %d)", keystore.MaxAuditPage))
	asJSON := fs.Bool("json", false, `print JSON ({"entries":[…],"next":…}, as GET /admin/v1/audit)`)
	if _, err := fs.parse(args); err != nil {
		return err
	}
	if *limit < 1 || *limit > keystore.MaxAuditPage {
		return fmt.Errorf("%w: audit: --limit must be between 1 and %d", errUsage, keystore.MaxAuditPage)
	}
	st, err := e.openStore(ctx, sf)
	if err != nil {
		return err
	}
	defer closeInto(&err, st)
	entries, err := st.Audit(ctx, *target, *after, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		page := admin.AuditPage{Entries: entries}
		if page.Entries == nil {
			page.Entries = []keystore.AuditEntry{}
		}
		if len(entries) == *limit {
			page.Next = fmt.Sprint(entries[len(entries)-1].Seq)
		}
		return e.printJSON(page)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tENTITY\tTARGET\tAFTER")
	for _, a := range entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Seq, a.At.Format(time.RFC3339), a.Actor, a.Action, a.Entity, a.Target, a.After)
	}
	return tw.Flush()
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
