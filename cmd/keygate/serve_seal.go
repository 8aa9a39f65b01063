package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"

	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keystore"
)

// Token signing secrets are encrypted under a secret that is not in the
// database (SECURITY.md: a read-only copy of the database grants nothing).
// It is, in order: KEYGATE_TOKEN_SECRET (every replica sets the same one),
// KEYGATE_PEPPER (which never enters the database either), or, for a SQLite
// store, a file beside the database that `serve` creates with mode 0600.
// A PostgreSQL deployment without either has no token exchange.

// tokenSecretFile is where a SQLite deployment keeps its token secret.
func tokenSecretFile(dsn string) (string, bool) {
	path, ok := strings.CutPrefix(dsn, "sqlite:")
	if !ok || path == "" || strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file::memory:") {
		return "", false
	}
	path, _, _ = strings.Cut(strings.TrimPrefix(path, "file:"), "?")
	return path + ".token-secret", true
}

// withTokenSecret gives the digester the token secret, when there is one.
// create makes the SQLite secret file if it is missing (serve does; tools
// that only read tokens do not).
func (e *environment) withTokenSecret(dsn string, d *keystore.Digester, create bool) (*keystore.Digester, error) {
	if s := e.getenv("KEYGATE_TOKEN_SECRET"); s != "" {
		out, err := d.WithSealSecret([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("KEYGATE_TOKEN_SECRET: %w", err)
		}
		return out, nil
	}
	path, ok := tokenSecretFile(dsn)
	if !ok || e.getenv("KEYGATE_PEPPER") != "" {
		return d, nil // the pepper seals, or there is nothing to seal with
	}
	secret, err := readTokenSecret(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		secret, err = createTokenSecret(path)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return d, nil
	case err != nil:
		return nil, err
	}
	return d.WithSealSecret(secret)
}

func readTokenSecret(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("token secret %s: mode %v, want 0600 (readable by its owner only)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	secret := []byte(strings.TrimSpace(string(b)))
	if len(secret) < 32 {
		return nil, fmt.Errorf("token secret %s: too short", path)
	}
	return secret, nil
}

func createTokenSecret(path string) ([]byte, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	secret := []byte(hex.EncodeToString(raw))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readTokenSecret(path) // another process made it first
	}
	if err != nil {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	_, err = f.Write(append(secret, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("token secret: %w", err)
	}
	return secret, nil
}

// tokenExchangeOff is logged at start-up when token exchange is disabled.
const tokenExchangeOff = "token exchange OFF: no secret outside the database to encrypt token signing keys; " +
	"set KEYGATE_TOKEN_SECRET (the same on every replica, 16+ bytes) or KEYGATE_PEPPER to enable /auth/api-key and /auth/refresh"

// registerExchange serves the token exchange, or, when it is off, answers
// its endpoints with 503 TOKEN_EXCHANGE_DISABLED.
func registerExchange(mux *http.ServeMux, x *extauthz.Exchange) {
	if x != nil {
		x.Register(mux)
		return
	}
	off := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("content-type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"code":"TOKEN_EXCHANGE_DISABLED","message":"Token exchange is not configured on this server"}` + "\n"))
	}
	mux.HandleFunc("/auth/api-key", off)
	mux.HandleFunc("/auth/refresh", off)
}
