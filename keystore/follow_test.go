package keystore

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// followFixture is a server's store handle with its cache, and a second
// handle on the same SQLite database: a CLI in another process, whose writes
// the server learns of only from the change log.
type followFixture struct {
	server, cli *Store
	digester    *Digester
	cache       *Cache
}

// newFollowFixture opens both handles, seeds site "web" and gives the
// server a cache; nothing follows the change log until follow.
func newFollowFixture(t *testing.T) *followFixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keygate.db")
	digester, _ := NewDigester()
	fx := &followFixture{server: openTestStore(t, path, digester), cli: openTestStore(t, path, digester), digester: digester}
	seedSite(t, fx.cli)
	cache, err := NewCache(fx.server, CacheConfig{MaxEntries: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)
	fx.cache = cache
	return fx
}

// follow starts following the server's change log into inv; the writes
// made before it starts are not replayed.
func (fx *followFixture) follow(t *testing.T, inv Invalidator) *Follower {
	t.Helper()
	f := &Follower{Source: fx.server, Cache: inv, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

type recordingInvalidator struct{ got []Change }

func (r *recordingInvalidator) Invalidate(e Entity, id string) {
	r.got = append(r.got, Change{Entity: e, ID: id})
}

// TestFollowerSeesAnotherProcessesWrites: a server's store handle follows
// the change log that a second handle (a CLI in another process) writes, and
// its cache stops serving the facts those writes changed.
func TestFollowerSeesAnotherProcessesWrites(t *testing.T) {
	ctx := context.Background()
	fx := newFollowFixture(t)
	cli, cache := fx.cli, fx.cache
	key, secret, err := cli.CreateKey(ctx, KeySpec{SiteID: "web", Mode: ModeLive})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingInvalidator{}
	f := fx.follow(t, multiInvalidator{rec, cache})
	ds := fx.digester.All(secret.Reveal())
	if got, err := cache.Key(ctx, ds); err != nil || got.Key.RevokedAt != nil {
		t.Fatalf("Key = %+v, %v", got, err)
	}
	cache.Wait()

	if _, err := cli.RevokeKey(ctx, key.ID); err != nil {
		t.Fatal(err)
	}
	inactive := false
	if _, err := cli.UpdateSite(ctx, "web", SiteUpdate{Active: &inactive}); err != nil {
		t.Fatal(err)
	}
	if err := f.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	want := []Change{{Entity: EntityKey, ID: key.ID}, {Entity: EntitySite, ID: "web"}}
	if diff := cmp.Diff(want, rec.got); diff != "" {
		t.Fatalf("applied changes (-want +got):\n%s", diff)
	}
	got, err := cache.Key(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	if got.Key.RevokedAt == nil || got.Site.Active {
		t.Fatalf("cache still serves the old facts: %+v", got)
	}
	// Changes before Start are not replayed; a second Poll applies nothing.
	rec.got = nil
	if err := f.Poll(ctx); err != nil || len(rec.got) != 0 {
		t.Fatalf("second poll applied %v, %v", rec.got, err)
	}
}

type multiInvalidator []Invalidator

func (m multiInvalidator) Invalidate(e Entity, id string) {
	for _, i := range m {
		i.Invalidate(e, id)
	}
}
