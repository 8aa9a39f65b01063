package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/secretscan"
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
// --github-scanning-keys is not set.
func (c webhookFlags) secretScanning(store *keystore.Store, format keystore.Format, digester *keystore.Digester, log *slog.Logger) (http.Handler, error) {
	if c.githubScanningKeys == "" {
		return nil, nil
	}
	keys, err := secretscan.LoadPublicKeys(c.githubScanningKeys)
	if err != nil {
		return nil, fmt.Errorf("--github-scanning-keys: %w", err)
	}
	log.Info("GitHub secret scanning endpoint on", "path", secretscan.GitHubPath, "public_keys", len(keys))
	return &secretscan.Handler{Keys: keys, Store: store, Format: format, Digester: digester, Action: c.leakedKeys, Log: log}, nil
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
	_ = store.Exclusive(ctx, webhookJob, 5*time.Second, w.Run)
}

// webhooksCmd is `keygate webhooks create|list|delete|deliveries|retry|rotate-secret`.
func (e environment) webhooksCmd(ctx context.Context, args []string) (err error) {
	sub, args, err := subcommand(args, "webhooks", "create", "list", "delete", "deliveries", "retry", "rotate-secret")
	if err != nil {
		return err
	}
	fs := e.flags("webhooks " + sub)
	var sf storeFlags
	sf.register(fs)
	url := fs.String("url", "", "receiver URL (create)")
	var events stringList
	fs.Var(&events, "event", "event type to send, repeatable (create); one of "+strings.Join(keystore.EventTypes, ", "))
	description := fs.String("description", "", "what the endpoint is for (create)")
	allowHTTP := fs.Bool("allow-http-webhooks", false, "local development: allow http:// and private receivers (create)")
	limit := fs.Int("limit", 100, "how many deliveries to list (deliveries)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	want := map[string]int{"create": 0, "list": 0, "delete": 1, "deliveries": 1, "retry": 2, "rotate-secret": 1}[sub]
	if len(pos) != want {
		return fmt.Errorf("%w: webhooks %s: want %d argument(s): %s", errUsage, sub, want,
			map[string]string{"create": "--url U --event E…", "list": "", "delete": "ID", "deliveries": "ID",
				"retry": "ID DELIVERY", "rotate-secret": "ID"}[sub])
	}
	st, err := e.openStore(ctx, sf)
	if err != nil {
		return err
	}
	defer closeInto(&err, st)
	switch sub {
	case "create":
		if err := (webhooks.Destinations{AllowHTTP: *allowHTTP}).CheckURL(*url); err != nil {
			return fmt.Errorf("%w: --url: %v", errUsage, err)
		}
		secret, err := webhooks.NewSecret()
		if err != nil {
			return err
		}
		ep, err := st.CreateWebhook(ctx, keystore.WebhookEndpoint{URL: *url, Events: events.values, Description: *description}, secret)
		if err != nil {
			return err
		}
		return e.printSecret(ep, secret, *asJSON)
	case "rotate-secret":
		secret, err := webhooks.NewSecret()
		if err != nil {
			return err
		}
		ep, err := st.UpdateWebhook(ctx, pos[0], keystore.WebhookUpdate{Secret: &secret}, webhooks.RotationOverlap)
		if err != nil {
			return err
		}
		return e.printSecret(ep, secret, *asJSON)
	case "list":
		eps, err := st.Webhooks(ctx)
		if err != nil {
			return err
		}
		return printList(e, *asJSON, "webhooks", eps, "ID\tURL\tEVENTS\tDISABLED\tDESCRIPTION", func(ep keystore.WebhookEndpoint) []any {
			return []any{ep.ID, ep.URL, strings.Join(ep.Events, ","), ep.Disabled, ep.Description}
		})
	case "delete":
		if err := st.DeleteWebhook(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "deleted webhook %s\n", pos[0])
		return nil
	case "deliveries":
		ds, err := st.WebhookDeliveries(ctx, pos[0], *limit)
		if err != nil {
			return err
		}
		return printList(e, *asJSON, "deliveries", ds, "ID\tEVENT\tTYPE\tSTATUS\tATTEMPTS\tLAST STATUS\tCREATED\tNEXT\tLAST ERROR", func(d keystore.Delivery) []any {
			return []any{d.ID, d.EventID, d.Type, d.Status, d.Attempts, d.LastStatus, d.CreatedAt.Format(time.RFC3339), optTime(d.NextAttemptAt), d.LastError}
		})
	}
	d, err := st.RetryDelivery(ctx, pos[0], pos[1])
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(d)
	}
	fmt.Fprintf(e.stdout, "delivery %s of webhook %s is due again\n", d.ID, d.Endpoint)
	return nil
}

// printSecret shows a new endpoint secret: alone on stdout's first line (like
// a new key), or in the JSON object; it is never shown again.
func (e environment) printSecret(ep keystore.WebhookEndpoint, secret string, asJSON bool) error {
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
func printList[T any](e environment, asJSON bool, name string, items []T, header string, row func(T) []any) error {
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
