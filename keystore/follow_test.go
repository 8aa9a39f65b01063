package keystore

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type recordingInvalidator struct{ got []Change }

func (r *recordingInvalidator) Invalidate(e Entity, id string) {
	r.got = append(r.got, Change{Entity: e, ID: id})
}

// TestFollowerSeesAnotherProcessesWrites: a server's store handle follows
// the change log that a second handle (a CLI in another process) writes, and
// its cache stops serving the facts those writes changed.
func TestFollowerSeesAnotherProcessesWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keygate.db")
	digester, _ := NewDigester()
	server := openTestStore(t, path, digester)
	cli := openTestStore(t, path, digester)

	seedSite(t, cli)
	key, secret, err := cli.CreateKey(ctx, KeySpec{SiteID: "web", Mode: ModeLive})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := NewCache(server, CacheConfig{MaxEntries: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	rec := &recordingInvalidator{}
	f := &Follower{Source: server, Cache: multiInvalidator{rec, cache}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ds := digester.All(secret.Reveal())
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
