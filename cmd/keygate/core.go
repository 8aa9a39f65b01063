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
	// filter, when serving, keeps unknown keys away from the store.
	filter *keystore.KeyFilter
}

// newCore builds the core. serve creates a missing SQLite database
// (create) and its token secret file, and passes the change-log follower
// (follow): its position is taken before the key filter is loaded (serve
// loads it later), so a key created in between reaches the filter through
// the change log. check refuses to create anything, like every other
// command, and reads the store without a filter. wrap, if set, wraps what the cache reads through
// (serve's store metrics).
func (e *environment) newCore(ctx context.Context, cfg coreConfig, log *slog.Logger, create bool, follow *keystore.Follower, wrap func(keystore.Loader) keystore.Loader) (_ *core, err error) {
	open := e.openStore
	if create {
		open = e.openOrCreate
	}
	// The policy compiles while the store side (migrations, change log,
	// key filter) loads: with a second core the store side adds nothing to
	// the start. The goroutine ends on its own if newCore fails first.
	type policyStart struct {
		rt  *policyRuntime
		err error
	}
	policyc := make(chan policyStart, 1)
	go func() {
		rt, err := startPolicy(ctx, cfg.policies, log)
		policyc <- policyStart{rt, err}
	}()
	format, digester, err := e.keyTools(cfg.storeFlags)
	if err != nil {
		return nil, err
	}
	if digester, err = e.withTokenSecret(cfg.store, digester, create); err != nil {
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
	var loader keystore.Loader = store
	if follow != nil {
		follow.Source = store
		if err := follow.Start(ctx); err != nil {
			return nil, fmt.Errorf("reading the change log of %s: %w", storeKind(cfg.store), err)
		}
		// Loaded after the first SERVING (loadKeyFilter): reading every
		// digest is most of a large store's start.
		c.filter = keystore.NewUnloadedKeyFilter(store, 0)
		loader = c.filter
	}
	if wrap != nil {
		loader = wrap(loader)
	}
	if c.cache, err = keystore.NewCache(loader, keystore.CacheConfig{StaleIfError: cfg.staleIfError}); err != nil {
		return nil, err
	}
	if follow != nil {
		follow.Cache, follow.Filter = c.cache, c.filter
	}
	ps := <-policyc
	if c.policy, err = ps.rt, ps.err; err != nil {
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
