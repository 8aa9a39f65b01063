package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keystore"
)

// coreConfig is what both `serve` and `check` decide with: the store, the
// policy and how credentials are read. Both register these flags through
// register, and both build through newCore, so the decision `check`
// explains is the one `serve` makes.
type coreConfig struct {
	storeFlags
	policies     string
	importedKeys bool
	staleIfError time.Duration
}

func (c *coreConfig) register(fs *flagSet) {
	c.storeFlags.register(fs)
	fs.StringVar(&c.policies, "policies", "", "policy directory (default: the built-in policies)")
	fs.BoolVar(&c.importedKeys, "imported-keys", false,
		"accept keys imported from an older system (any string): credentials that are not keygate keys are then looked up by digest instead of refused offline")
}

// core is the deciding part of keygate: store, cache, policy and the
// Authorizer over them.
type core struct {
	store  *keystore.Store
	cache  *keystore.Cache
	format keystore.Format
	policy *policyRuntime
	authz  *extauthz.Authorizer
}

// newCore builds the core. serve creates a missing SQLite database
// (create); check refuses to, like every other command.
func (e *environment) newCore(ctx context.Context, cfg coreConfig, log *slog.Logger, create bool) (_ *core, err error) {
	open := e.openStore
	if create {
		open = e.openOrCreate
	}
	format, digester, err := e.keyTools(cfg.storeFlags)
	if err != nil {
		return nil, err
	}
	store, err := open(ctx, cfg.storeFlags)
	if err != nil {
		return nil, err
	}
	c := &core{store: store, format: format}
	defer func() {
		if err != nil {
			_ = c.Close()
		}
	}()
	if c.cache, err = keystore.NewCache(store, keystore.CacheConfig{StaleIfError: cfg.staleIfError}); err != nil {
		return nil, err
	}
	if c.policy, err = startPolicy(ctx, cfg.policies, log); err != nil {
		return nil, err
	}
	c.authz = &extauthz.Authorizer{Facts: c.cache, Policy: c.policy.engine, Format: format, Digester: digester, Log: log,
		ImportedKeys: cfg.importedKeys}
	return c, nil
}

// Close releases the cache and the store.
func (c *core) Close() error {
	if c.cache != nil {
		c.cache.Close()
	}
	if err := c.store.Close(); err != nil {
		return fmt.Errorf("closing the store: %w", err)
	}
	return nil
}
