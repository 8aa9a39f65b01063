// Package secretscan answers GitHub's secret scanning partner program: GitHub
// finds something shaped like a keygate key in a public place and POSTs it
// here, signed; keygate says whether it is one of its keys and, for a live
// key by default, revokes it at once and tells the key's owners (key.leaked).
//
// https://docs.github.com/en/code-security/secret-scanning/secret-scanning-partnership-program
package secretscan

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/keygate/keygate/keystore"
)

// GitHubPath is where GitHub posts its reports.
const GitHubPath = "/secret-scanning/github"

// Headers GitHub signs its reports with.
const (
	HeaderKeyID     = "Github-Public-Key-Identifier"
	HeaderSignature = "Github-Public-Key-Signature"
)

// Labels of the answer.
const (
	TruePositive  = "true_positive"
	FalsePositive = "false_positive"
)

// Bounds: GitHub sends batches of matches; these are far above a real batch.
const (
	MaxBody    = 1 << 20
	MaxReports = 1000
	maxToken   = 1024
	maxField   = 2048
	maxKeys    = 64
	maxKeyFile = 1 << 20
)

// Errors.
var (
	ErrSignature = errors.New("secretscan: missing or bad signature")
	ErrRequest   = errors.New("secretscan: malformed report")
)

// Verify checks GitHub's signature: ECDSA P-256 over SHA-256 of the raw
// body, base64 DER, by the key the identifier names.
func (p PublicKeys) Verify(keyID, signature string, body []byte) error {
	pub, ok := p[keyID]
	if !ok || signature == "" || len(signature) > 512 {
		return ErrSignature
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return ErrSignature
	}
	sum := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(pub, sum[:], sig) {
		return ErrSignature
	}
	return nil
}

// Report is one match GitHub found.
type Report struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// Answer is keygate's verdict on one report.
type Answer struct {
	TokenRaw  string `json:"token_raw"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

// ParseReports parses a request body: a JSON array of 1 to MaxReports
// reports, each with a token of at most 1 KiB and fields of at most 2 KiB.
func ParseReports(body []byte) ([]Report, error) {
	if len(body) > MaxBody {
		return nil, fmt.Errorf("%w: body larger than %d bytes", ErrRequest, MaxBody)
	}
	var reports []Report
	if err := json.Unmarshal(body, &reports); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRequest, err)
	}
	if len(reports) == 0 || len(reports) > MaxReports {
		return nil, fmt.Errorf("%w: want 1 to %d reports", ErrRequest, MaxReports)
	}
	for i, r := range reports {
		if r.Token == "" || len(r.Token) > maxToken {
			return nil, fmt.Errorf("%w: report %d: token must be 1 to %d bytes", ErrRequest, i, maxToken)
		}
		if len(r.Type) > maxField || len(r.URL) > maxField || len(r.Source) > maxField {
			return nil, fmt.Errorf("%w: report %d: field longer than %d bytes", ErrRequest, i, maxField)
		}
	}
	return reports, nil
}

// Store is what the handler needs of the key store.
type Store interface {
	LookupKey(ctx context.Context, digests []keystore.Digest) (keystore.KeyFacts, error)
	ReportLeak(ctx context.Context, keyID string, l keystore.Leak) (action string, first bool, err error)
	PeekRefreshToken(ctx context.Context, digests []keystore.Digest, now time.Time) (keystore.RefreshGrant, bool, error)
	ReportTokenLeak(ctx context.Context, keyID string, l keystore.TokenLeak) (action string, first bool, err error)
}

// Actions for leaked keys (--leaked-keys).
const (
	ActionDefault = ""       // revoke live keys, notify for test keys
	ActionRevoke  = "revoke" // revoke every leaked key
	ActionNotify  = "notify" // never revoke; key.leaked only
)

// Handler serves POST /secret-scanning/github.
type Handler struct {
	Keys     PublicKeys
	Store    Store
	Format   keystore.Format
	Digester *keystore.Digester
	Action   string
	// Tokens verifies reported access tokens (nil when the token exchange
	// is off: then none is recognised).
	Tokens TokenVerifier
	// Now is the clock (default time.Now).
	Now func() time.Time
	Log *slog.Logger
	// Timeout bounds the store work of one request (default 10 s).
	Timeout time.Duration
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "unreadable body"})
		return
	}
	if len(body) > MaxBody {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"message": "body too large"})
		return
	}
	// Nothing is parsed, looked up or logged before the signature holds.
	if err := h.Keys.Verify(r.Header.Get(HeaderKeyID), r.Header.Get(HeaderSignature), body); err != nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"message": "missing or bad GitHub signature"})
		return
	}
	reports, err := ParseReports(body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
		return
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	answers := make([]Answer, len(reports))
	for i, rep := range reports {
		label, err := h.handle(ctx, rep)
		if err != nil {
			// GitHub retries a failed delivery; reports already acted on
			// are idempotent.
			h.Log.Error("secret scanning: store unavailable", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"message": "try again later"})
			return
		}
		answers[i] = Answer{TokenRaw: rep.Token, TokenType: rep.Type, Label: label}
	}
	writeJSON(w, http.StatusOK, answers)
}

// handle labels one report and acts on a true positive.
func (h *Handler) handle(ctx context.Context, rep Report) (string, error) {
	if label, ok, err := h.handleToken(ctx, rep); ok {
		return label, err
	}
	// The checksum is public, so this filters only noise, not attackers;
	// the signature already keeps strangers out.
	parsed, err := h.Format.Parse(rep.Token)
	if err != nil {
		return FalsePositive, nil
	}
	facts, err := h.Store.LookupKey(ctx, h.Digester.All(rep.Token))
	if errors.Is(err, keystore.ErrNotFound) {
		return FalsePositive, nil
	}
	if err != nil {
		return "", err
	}
	revoke := h.revokes(parsed.Mode)
	where := source(rep)
	action, first, err := h.Store.ReportLeak(ctx, facts.Key.ID, keystore.Leak{Source: where, Revoke: revoke})
	if err != nil {
		return "", err
	}
	if first {
		// The key id and display prefix only: never the token.
		h.Log.Warn("leaked key reported by GitHub secret scanning", "key_id", facts.Key.ID, "prefix", facts.Key.Prefix,
			"mode", parsed.Mode, "site", facts.Site.ID, "source", where, "action", action)
	}
	return TruePositive, nil
}

// revokes applies --leaked-keys to a credential of a key of mode.
func (h *Handler) revokes(mode keystore.Mode) bool {
	return h.Action == ActionRevoke || (h.Action == ActionDefault && mode == keystore.ModeLive)
}

// source is where a report says the credential was found.
func source(rep Report) string {
	if rep.URL != "" {
		return rep.URL
	}
	return rep.Source
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
