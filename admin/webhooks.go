package admin

import (
	"context"
	"net/http"
	"strings"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/webhooks"
)

type webhookBody struct {
	URL         *string   `json:"url"`
	Events      *[]string `json:"events"`
	Description *string   `json:"description"`
	Disabled    *bool     `json:"disabled"`
	// RotateSecret (PATCH only) makes a new secret; the old one keeps
	// signing beside it for 24 hours.
	RotateSecret bool `json:"rotate_secret"`
}

// webhookAnswer is an endpoint, with its secret only when just made.
type webhookAnswer struct {
	keystore.WebhookEndpoint
	Secret string `json:"secret,omitempty"`
}

// checkURL checks a webhook endpoint's URL against h.Webhooks (https and
// public addresses only, unless --allow-http-webhooks); the worker checks
// again at every dial.
func (h *Handler) checkURL(u *string) error {
	if u == nil {
		return nil
	}
	if err := h.Webhooks.CheckURL(*u); err != nil {
		return invalid("url: %s", trimWebhooks(err))
	}
	return nil
}

func trimWebhooks(err error) string { return strings.TrimPrefix(err.Error(), "webhooks: ") }

func (h *Handler) createWebhook(ctx context.Context, r *http.Request, b webhookBody) (int, any, error) {
	if b.URL == nil || b.Events == nil {
		return 0, nil, invalid(`"url" and "events" are required`)
	}
	if b.RotateSecret {
		return 0, nil, invalid(`"rotate_secret" is for PATCH`)
	}
	if err := h.checkURL(b.URL); err != nil {
		return 0, nil, err
	}
	ep := keystore.WebhookEndpoint{URL: *b.URL, Events: *b.Events}
	if b.Description != nil {
		ep.Description = *b.Description
	}
	if b.Disabled != nil {
		ep.Disabled = *b.Disabled
	}
	secret, err := webhooks.NewSecret()
	if err != nil {
		return 0, nil, err
	}
	ep, err = h.Store.CreateWebhook(ctx, ep, secret)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, webhookAnswer{WebhookEndpoint: ep, Secret: secret}, nil
}

func (h *Handler) listWebhooks(ctx context.Context, _ *http.Request) (int, any, error) {
	eps, err := h.Store.Webhooks(ctx)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"webhooks": eps}, nil
}

func (h *Handler) getWebhook(ctx context.Context, r *http.Request) (int, any, error) {
	ep, err := h.Store.Webhook(ctx, r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, ep, nil
}

func (h *Handler) updateWebhook(ctx context.Context, r *http.Request, b webhookBody) (int, any, error) {
	if err := h.checkURL(b.URL); err != nil {
		return 0, nil, err
	}
	u := keystore.WebhookUpdate{URL: b.URL, Events: b.Events, Description: b.Description, Disabled: b.Disabled}
	var secret string
	if b.RotateSecret {
		var err error
		if secret, err = webhooks.NewSecret(); err != nil {
			return 0, nil, err
		}
		u.Secret = &secret
	}
	ep, err := h.Store.UpdateWebhook(ctx, r.PathValue("id"), u, webhooks.RotationOverlap)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, webhookAnswer{WebhookEndpoint: ep, Secret: secret}, nil
}

func (h *Handler) deleteWebhook(ctx context.Context, r *http.Request) (int, any, error) {
	id := r.PathValue("id")
	if err := h.Store.DeleteWebhook(ctx, id); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"id": id, "deleted": true}, nil
}

func (h *Handler) listDeliveries(ctx context.Context, r *http.Request) (int, any, error) {
	limit, err := limitQuery(r, 100, 1000)
	if err != nil {
		return 0, nil, err
	}
	ds, err := h.Store.WebhookDeliveries(ctx, r.PathValue("id"), limit)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"deliveries": ds}, nil
}

func (h *Handler) retryDelivery(ctx context.Context, r *http.Request) (int, any, error) {
	d, err := h.Store.RetryDelivery(ctx, r.PathValue("id"), r.PathValue("delivery"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, d, nil
}
