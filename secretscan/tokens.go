package secretscan

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/tokens"
)

// TokenVerifier checks access tokens: *tokens.Keyring.
type TokenVerifier interface {
	Verify(raw string, now time.Time) (tokens.Claims, error)
}

// handleToken labels a report of an access token ("<prefix>_at_…") or a
// refresh token ("<prefix>_rt_…") and acts on a true positive; ok is false
// for anything else (a key, or noise), which handle then reads as a key.
//
// An access token is ours when its signature verifies under a signing key
// the deployment still holds, expired or not (an expired one needs no
// action). A refresh token is ours when its digest is stored, whatever its
// state (rows are kept until the token expires).
func (h *Handler) handleToken(ctx context.Context, rep Report) (label string, ok bool, err error) {
	prefix := h.Format.Prefix
	switch {
	case strings.HasPrefix(rep.Token, prefix+"_at_"):
		return h.accessToken(ctx, rep)
	case strings.HasPrefix(rep.Token, prefix+"_rt_"):
		return h.refreshToken(ctx, rep)
	}
	return "", false, nil
}

func (h *Handler) accessToken(ctx context.Context, rep Report) (string, bool, error) {
	if h.Tokens == nil {
		// The token exchange is off here: no signing key to check with.
		return FalsePositive, true, nil
	}
	claims, err := h.Tokens.Verify(rep.Token, h.now())
	if err != nil && !errors.Is(err, tokens.ErrExpired) {
		return FalsePositive, true, nil // forged, tampered, or its signing key retired
	}
	return h.reportToken(ctx, rep, claims.KeyID, keystore.Mode(claims.Mode), keystore.TokenLeak{
		Credential: keystore.CredentialAccessToken, ExpiresAt: claims.ExpiresAt})
}

func (h *Handler) refreshToken(ctx context.Context, rep Report) (string, bool, error) {
	if !tokens.NewFormat(h.Format.Prefix).LooksRefresh(rep.Token) {
		return FalsePositive, true, nil
	}
	grant, _, err := h.Store.PeekRefreshToken(ctx, h.Digester.All(rep.Token), h.now())
	if errors.Is(err, keystore.ErrNotFound) {
		return FalsePositive, true, nil
	}
	if err != nil {
		return "", true, err
	}
	return h.reportToken(ctx, rep, grant.KeyID, grant.Mode, keystore.TokenLeak{
		Credential: keystore.CredentialRefreshToken, Family: grant.Family})
}

// reportToken records a token leak under the same --leaked-keys rule as
// keys (by the mode of the token's key).
func (h *Handler) reportToken(ctx context.Context, rep Report, keyID string, mode keystore.Mode, l keystore.TokenLeak) (string, bool, error) {
	l.Digest = h.Digester.Primary(rep.Token)
	l.Source = source(rep)
	l.Revoke = h.revokes(mode)
	action, first, err := h.Store.ReportTokenLeak(ctx, keyID, l)
	if errors.Is(err, keystore.ErrNotFound) {
		return FalsePositive, true, nil // its key was deleted since
	}
	if err != nil {
		return "", true, err
	}
	if first {
		// The key id only: never the token.
		h.Log.Warn("leaked token reported by GitHub secret scanning", "credential", l.Credential, "key_id", keyID,
			"mode", mode, "source", l.Source, "action", action)
	}
	return TruePositive, true, nil
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}
