package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keystore"
)

// policyFlag is --policies on the commands that validate against the
// policy's data (plans, limit names): the directory the server runs.
type policyFlag struct{ dir string }

func (p *policyFlag) register(fs *flagSet) {
	fs.StringVar(&p.dir, "policies", "", "policy directory the server runs, whose plans and limit names are accepted (default: the built-in policies)")
}

func (p *policyFlag) vocabulary(ctx context.Context) (admin.Vocabulary, error) {
	pol, err := loadPolicy(ctx, p.dir)
	if err != nil {
		return admin.Vocabulary{}, fmt.Errorf("reading the policy to validate against: %w", err)
	}
	return admin.VocabularyOf(pol), nil
}

// check checks a flag's value against the policy's vocabulary (plans,
// limit names); a value it refuses is a usage error naming flag.
func (p *policyFlag) check(ctx context.Context, flag string, check func(admin.Vocabulary) error) error {
	v, err := p.vocabulary(ctx)
	if err != nil {
		return err
	}
	if err := check(v); err != nil {
		return usageOf(err, flag)
	}
	return nil
}

// usageOf turns a value the policy refuses into a usage error naming the flag.
func usageOf(err error, flag string) error {
	var fe *admin.FieldError
	if errors.As(err, &fe) {
		return fmt.Errorf("%w: %s: %s", errUsage, flag, fe.Message)
	}
	return err
}

// namedObject finds `account "acme"` in a store message. Compiled when
// first needed: at package initialisation every start would pay for it.
var namedObject = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(account|site|key) "([^"]*)"\s*$`)
})

// storeError says what a store error means for the object named and how
// to fix it, without the store's internal prefixes.
func storeError(err error, kind, id string) error {
	fixes := map[string][2]string{ // kind → not found fix, conflict fix
		"account": {"list them with keygate accounts list", "pick another --id, or change it with keygate accounts update --id " + id},
		"site":    {"list them with keygate sites list", "pick another --id, or change it with keygate sites update --id " + id},
		"key":     {"list a site's keys with keygate keys list --site SITE", ""},
	}
	msg := strings.ReplaceAll(err.Error(), "keystore: ", "")
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		// The store may name another object: a new site's account, say.
		if m := namedObject().FindStringSubmatch(msg); m != nil && fixes[m[1]][0] != "" {
			kind, id = m[1], m[2]
		}
		return fmt.Errorf("%s %q not found (in this --store); %s", kind, id, fixes[kind][0])
	case errors.Is(err, keystore.ErrConflict):
		return fmt.Errorf("%s %q already exists; %s", kind, id, fixes[kind][1])
	case errors.Is(err, keystore.ErrInvalid):
		return fmt.Errorf("%w: %s %q: %s", errUsage, kind, id, msg)
	}
	return fmt.Errorf("%s %q: %s", kind, id, msg)
}

// output prints v as indented JSON, or as the table table writes.
func (e *environment) output(asJSON bool, v any, table func(w io.Writer)) error {
	if asJSON {
		return e.printJSON(v)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func (e *environment) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// listFlags are the paging flags of every list command.
type listFlags struct {
	after  string
	limit  int
	asJSON bool
}

func (l *listFlags) register(fs *flagSet, what string) {
	fs.StringVar(&l.after, "after", "", "list "+what+" after this id (the \"next\" of the previous page)")
	fs.IntVar(&l.limit, "limit", 100, "at most this many (1 to 1000)")
	fs.BoolVar(&l.asJSON, "json", false, "print JSON")
}

func (l *listFlags) validate() error {
	if l.limit < 1 || l.limit > keystore.MaxPage {
		return fmt.Errorf("%w: --limit must be between 1 and %d", errUsage, keystore.MaxPage)
	}
	return nil
}

// page is a listing with the cursor of the next page, as the admin API
// answers it.
func page[T any](name string, items []T, limit int, id func(T) string) map[string]any {
	out := map[string]any{name: items}
	if len(items) == limit && limit > 0 {
		out["next"] = id(items[len(items)-1])
	}
	return out
}

// withStore opens the (existing) store for one command.
func (e *environment) withStore(ctx context.Context, sf storeFlags, fn func(st *keystore.Store) error) (err error) {
	st, err := e.openStore(ctx, sf)
	if err != nil {
		return err
	}
	defer closeInto(&err, st)
	return fn(st)
}

func (e *environment) accountsCommand() *cobra.Command {
	return e.newGroup("accounts", "create, update, list and show accounts",
		e.accountWrite("create"), e.accountWrite("update"), e.accountsList(), e.accountShow())
}

func (e *environment) accountWrite(sub string) *cobra.Command {
	var sf storeFlags
	var pf policyFlag
	var id, plan, status string
	var asJSON bool
	short := map[string]string{"create": "create an account", "update": "change an account's plan or status"}[sub]
	c, fs := e.newLeaf(sub, short, e.noArgs, func(ctx context.Context, _ []string) error {
		switch {
		case id == "":
			return fmt.Errorf("%w: accounts %s: --id is required", errUsage, sub)
		case sub == "create" && plan == "":
			return fmt.Errorf("%w: accounts create: --plan is required", errUsage)
		}
		if status != "" {
			if err := admin.CheckStatus(status); err != nil {
				return usageOf(err, "--status")
			}
		}
		if plan != "" {
			if err := pf.check(ctx, "--plan", func(v admin.Vocabulary) error { return v.CheckPlan(plan) }); err != nil {
				return err
			}
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			var a keystore.Account
			var err error
			if sub == "create" {
				a, err = st.CreateAccount(ctx, keystore.Account{ID: id, Plan: plan, Status: keystore.AccountStatus(status)})
			} else {
				var u keystore.AccountUpdate
				if plan != "" {
					u.Plan = &plan
				}
				if status != "" {
					s := keystore.AccountStatus(status)
					u.Status = &s
				}
				a, err = st.UpdateAccount(ctx, id, u)
			}
			if err != nil {
				return storeError(err, "account", id)
			}
			return e.output(asJSON, a, func(w io.Writer) { accountTable(w, a) })
		})
	})
	sf.register(fs)
	pf.register(fs)
	fs.StringVar(&id, "id", "", "account id")
	fs.StringVar(&plan, "plan", "", "plan, one of the policy's plans (built-in: free, starter, plus, pro, max, enterprise)")
	fs.StringVar(&status, "status", "", "active, trialing, trial_expired or inactive (create: default active)")
	fs.BoolVar(&asJSON, "json", false, "print the account as JSON")
	return c
}

func accountTable(w io.Writer, accounts ...keystore.Account) {
	fmt.Fprintln(w, "ID\tPLAN\tSTATUS\tCREATED\tUPDATED")
	for _, a := range accounts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", a.ID, a.Plan, a.Status, a.CreatedAt.Format(time.RFC3339), a.UpdatedAt.Format(time.RFC3339))
	}
}

func (e *environment) accountsList() *cobra.Command {
	return listing[keystore.Account]{plural: "accounts", short: "list accounts",
		read: func(ctx context.Context, st *keystore.Store, after string, limit int) ([]keystore.Account, error) {
			return st.Accounts(ctx, after, limit)
		},
		id: func(a keystore.Account) string { return a.ID }, table: accountTable}.command(e)
}

func (e *environment) accountShow() *cobra.Command {
	return showCommand(e, "account", (*keystore.Store).Account, accountTable)
}
