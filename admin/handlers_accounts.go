package admin

import (
	"context"
	"net/http"

	"github.com/keygate/keygate/keystore"
)

// The write side of accounts and sites (their reads are in read.go).

type accountBody struct {
	ID     *string `json:"id"`
	Plan   *string `json:"plan"`
	Status *string `json:"status"`
}

func (h *Handler) createAccount(ctx context.Context, r *http.Request, b accountBody) (int, any, error) {
	if b.ID == nil || b.Plan == nil {
		return 0, nil, invalid(`"id" and "plan" are required`)
	}
	if err := h.checkAccount(b); err != nil {
		return 0, nil, err
	}
	a := keystore.Account{ID: *b.ID, Plan: *b.Plan}
	if b.Status != nil {
		a.Status = keystore.AccountStatus(*b.Status)
	}
	a, err := h.Store.CreateAccount(ctx, a)
	return http.StatusCreated, a, err
}

func (h *Handler) updateAccount(ctx context.Context, r *http.Request, b accountBody) (int, any, error) {
	if b.ID != nil && *b.ID != r.PathValue("id") {
		return 0, nil, invalid(`"id" cannot change`)
	}
	if err := h.checkAccount(b); err != nil {
		return 0, nil, err
	}
	var u keystore.AccountUpdate
	u.Plan = b.Plan
	if b.Status != nil {
		s := keystore.AccountStatus(*b.Status)
		u.Status = &s
	}
	a, err := h.Store.UpdateAccount(ctx, r.PathValue("id"), u)
	return http.StatusOK, a, err
}

type siteBody struct {
	ID      *string   `json:"id"`
	Account *string   `json:"account"`
	Domains *[]string `json:"domains"`
	Active  *bool     `json:"active"`
}

func (h *Handler) createSite(ctx context.Context, r *http.Request, b siteBody) (int, any, error) {
	if b.ID == nil || b.Account == nil {
		return 0, nil, invalid(`"id" and "account" are required`)
	}
	s := keystore.Site{ID: *b.ID, AccountID: *b.Account, Active: true}
	if b.Domains != nil {
		s.Domains = *b.Domains
	}
	if b.Active != nil {
		s.Active = *b.Active
	}
	s, err := h.Store.CreateSite(ctx, s)
	return http.StatusCreated, s, err
}

func (h *Handler) updateSite(ctx context.Context, r *http.Request, b siteBody) (int, any, error) {
	if b.ID != nil && *b.ID != r.PathValue("id") || b.Account != nil {
		return 0, nil, invalid(`"id" and "account" cannot change`)
	}
	s, err := h.Store.UpdateSite(ctx, r.PathValue("id"), keystore.SiteUpdate{Domains: b.Domains, Active: b.Active})
	return http.StatusOK, s, err
}
