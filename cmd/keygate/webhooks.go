package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/secretscan"
	"github.com/keygate/keygate/tokens"
	"github.com/keygate/keygate/webhooks"
)

// webhookFlags are the serve flags of webhook delivery and of the
// leaked-key endpoint.
type webhookFlags struct {
	allowHTTP          bool
	retryFor           time.Duration
	githubScanningKeys string
	leakedKeys         string
}

func (c *webhookFlags) register(fs *flagSet) {
	fs.BoolVar(&c.allowHTTP, "allow-http-webhooks", false,
		"local development: allow http:// webhook URLs and loopback, private and link-local receivers")
	fs.DurationVar(&c.retryFor, "webhook-retry-for", webhooks.DefaultRetryFor,
		"retry a webhook delivery for this long before marking it failed")
	fs.StringVar(&c.githubScanningKeys, "github-scanning-keys", "",
		"GitHub's secret scanning public keys (JSON from api.github.com/meta/public_keys/secret_scanning); enables POST "+secretscan.GitHubPath)
	fs.StringVar(&c.leakedKeys, "leaked-keys", "",
		"what a reported leak does: revoke or notify (default: revoke live keys, notify for test keys)")
}

func (c webhookFlags) validate() error {
	if c.retryFor < time.Minute || c.retryFor > 30*24*time.Hour {
		return fmt.Errorf("%w: --webhook-retry-for must be between 1m and 720h", errUsage)
	}
	switch c.leakedKeys {
	case secretscan.ActionDefault, secretscan.ActionRevoke, secretscan.ActionNotify:
	default:
		return fmt.Errorf("%w: --leaked-keys: want revoke or notify", errUsage)
	}
	return nil
}

// secretScanning builds the leaked-key endpoint, or nil when
// --github-scanning-keys is not set. ring verifies reported access tokens
// (nil when the token exchange is off).
func (c webhookFlags) secretScanning(store *keystore.Store, format keystore.Format, digester *keystore.Digester, ring *tokens.Keyring, log *slog.Logger) (http.Handler, error) {
	if c.githubScanningKeys == "" {
		return nil, nil
	}
	keys, err := secretscan.LoadPublicKeys(c.githubScanningKeys)
	if err != nil {
		return nil, fmt.Errorf("--github-scanning-keys: %w", err)
	}
	log.Info("GitHub secret scanning endpoint on", "path", secretscan.GitHubPath, "public_keys", len(keys))
	h := &secretscan.Handler{Keys: keys, Store: store, Format: format, Digester: digester, Action: c.leakedKeys, Log: log}
	if ring != nil {
		h.Tokens = ring
	}
	return h, nil
}

func (c webhookFlags) destinations() webhooks.Destinations {
	return webhooks.Destinations{AllowHTTP: c.allowHTTP}
}

// expiringNotice is how long before expires_at key.expiring fires (and for
// how long after it key.expired still does, for a replica that was down).
const expiringNotice = 7 * 24 * time.Hour

// deliveryRetention is how long ended deliveries stay listed.
const deliveryRetention = 30 * 24 * time.Hour

// webhookJob numbers the delivery worker's lock among keystore.Exclusive jobs.
const webhookJob = 1

// webhookLockCheck is how often the worker's lock is checked (PostgreSQL)
// or its lease renewed (SQLite, where a crashed holder is replaced after
// three of these).
const webhookLockCheck = 2 * time.Second

// runWebhooks runs the delivery worker on the one replica that holds the
// lock; the others wait their turn (a replica that dies hands it over).
func (c webhookFlags) runWebhooks(ctx context.Context, store *keystore.Store, log *slog.Logger) {
	w := &webhooks.Worker{Outbox: store, Destinations: c.destinations(), RetryFor: c.retryFor, Log: log,
		Scan: func(ctx context.Context, now time.Time) error {
			if _, err := store.ScanNotices(ctx, now, expiringNotice, limits.Month(now)); err != nil {
				return err
			}
			_, err := store.PruneDeliveries(ctx, now.Add(-deliveryRetention), 1000)
			return err
		}}
	_ = store.Exclusive(ctx, webhookJob, webhookLockCheck, func(held context.Context) error {
		err := w.Run(held)
		if ctx.Err() == nil {
			log.Warn("webhook delivery worker stopped: its lock or lease was lost; contending for it again", "err", err)
		}
		return err
	})
}

// webhooksCommand is `keygate webhooks create|list|delete|deliveries|retry|rotate-secret`.
func (e *environment) webhooksCommand() *cobra.Command {
	return e.newGroup("webhooks", "manage webhook endpoints and their deliveries",
		e.webhooksCreate(), e.webhooksLeaf("list", "list webhook endpoints", e.noArgs, e.webhooksList),
		e.webhooksLeaf("delete ID", "delete a webhook endpoint", exactArgs(1, "ID"), e.webhooksDelete),
		e.webhooksDeliveries(),
		e.webhooksLeaf("retry ID DELIVERY", "make a delivery due again (same webhook-id)", exactArgs(2, "ID DELIVERY"), e.webhooksRetry),
		e.webhooksLeaf("rotate-secret ID", "give an endpoint a new secret; the old one keeps signing for 24h", exactArgs(1, "ID"), e.webhooksRotate))
}

// webhookRun is one webhooks subcommand on an open store.
type webhookRun func(ctx context.Context, st *keystore.Store, args []string, asJSON bool) error

func (e *environment) webhooksLeaf(use, short string, args cobra.PositionalArgs, run webhookRun) *cobra.Command {
	var sf storeFlags
	var asJSON bool
	c, fs := e.newLeaf(use, short, args, func(ctx context.Context, pos []string) error {
		return e.withStore(ctx, sf, func(st *keystore.Store) error { return run(ctx, st, pos, asJSON) })
	})
	sf.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func (e *environment) webhooksCreate() *cobra.Command {
	var url, description string
	var events stringList
	var allowHTTP bool
	c := e.webhooksLeaf("create", "register a webhook endpoint; its secret is printed once", e.noArgs,
		func(ctx context.Context, st *keystore.Store, _ []string, asJSON bool) error {
			if err := (webhooks.Destinations{AllowHTTP: allowHTTP}).CheckURL(url); err != nil {
				return fmt.Errorf("%w: --url: %v", errUsage, err)
			}
			secret, err := webhooks.NewSecret()
			if err != nil {
				return err
			}
			ep, err := st.CreateWebhook(ctx, keystore.WebhookEndpoint{URL: url, Events: events.values, Description: description}, secret)
			if err != nil {
				return err
			}
			return e.printSecret(ep, secret, asJSON)
		})
	fs := c.Flags()
	fs.StringVar(&url, "url", "", "receiver URL (https://, public address)")
	fs.Var(&events, "event", "event type to send, repeatable; one of "+strings.Join(keystore.EventTypes, ", "))
	fs.StringVar(&description, "description", "", "what the endpoint is for")
	fs.BoolVar(&allowHTTP, "allow-http-webhooks", false, "local development: allow http:// and private receivers")
	return c
}

func (e *environment) webhooksDeliveries() *cobra.Command {
	var limit int
	c := e.webhooksLeaf("deliveries ID", "list an endpoint's deliveries, newest first", exactArgs(1, "ID"),
		func(ctx context.Context, st *keystore.Store, pos []string, asJSON bool) error {
			ds, err := st.WebhookDeliveries(ctx, pos[0], limit)
			if err != nil {
				return err
			}
			return printList(e, asJSON, "deliveries", ds, "ID\tEVENT\tTYPE\tSTATUS\tATTEMPTS\tLAST STATUS\tCREATED\tNEXT\tLAST ERROR", func(d keystore.Delivery) []any {
				return []any{d.ID, d.EventID, d.Type, d.Status, d.Attempts, d.LastStatus, d.CreatedAt.Format(time.RFC3339), optTime(d.NextAttemptAt), d.LastError}
			})
		})
	c.Flags().IntVar(&limit, "limit", 100, "how many deliveries to list")
	return c
}

func (e *environment) webhooksList(ctx context.Context, st *keystore.Store, _ []string, asJSON bool) error {
	eps, err := st.Webhooks(ctx)
	if err != nil {
		return err
	}
	return printList(e, asJSON, "webhooks", eps, "ID\tURL\tEVENTS\tDISABLED\tDESCRIPTION", func(ep keystore.WebhookEndpoint) []any {
		return []any{ep.ID, ep.URL, strings.Join(ep.Events, ","), ep.Disabled, ep.Description}
	})
}

func (e *environment) webhooksDelete(ctx context.Context, st *keystore.Store, pos []string, _ bool) error {
	if err := st.DeleteWebhook(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "deleted webhook %s\n", pos[0])
	return nil
}

func (e *environment) webhooksRotate(ctx context.Context, st *keystore.Store, pos []string, asJSON bool) error {
	secret, err := webhooks.NewSecret()
	if err != nil {
		return err
	}
	ep, err := st.UpdateWebhook(ctx, pos[0], keystore.WebhookUpdate{Secret: &secret}, webhooks.RotationOverlap)
	if err != nil {
		return err
	}
	return e.printSecret(ep, secret, asJSON)
}

func (e *environment) webhooksRetry(ctx context.Context, st *keystore.Store, pos []string, asJSON bool) error {
	d, err := st.RetryDelivery(ctx, pos[0], pos[1])
	if err != nil {
		return err
	}
	if asJSON {
		return e.printJSON(d)
	}
	fmt.Fprintf(e.stdout, "delivery %s of webhook %s is due again\n", d.ID, d.Endpoint)
	return nil
}

// printSecret shows a new endpoint secret: alone on stdout's first line (like
// a new key), or in the JSON object; it is never shown again.
func (e *environment) printSecret(ep keystore.WebhookEndpoint, secret string, asJSON bool) error {
	if asJSON {
		return e.printJSON(struct {
			keystore.WebhookEndpoint
			Secret string `json:"secret"`
		}{ep, secret})
	}
	fmt.Fprintln(e.stdout, secret)
	fmt.Fprintf(e.stderr, "webhook %s → %s (%s); the secret is shown only this once\n", ep.ID, ep.URL, strings.Join(ep.Events, ","))
	return nil
}

// printList prints items as {"name": […]} or as a table with header.
func printList[T any](e *environment, asJSON bool, name string, items []T, header string, row func(T) []any) error {
	if asJSON {
		return e.printJSON(map[string]any{name: items})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		cells := row(it)
		for i, c := range cells {
			sep := "\t"
			if i == len(cells)-1 {
				sep = "\n"
			}
			fmt.Fprint(tw, c, sep)
		}
	}
	return tw.Flush()
}
