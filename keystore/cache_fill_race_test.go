package keystore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/keystore"
)

// funcLoader is a Loader whose key lookups the test scripts.
type funcLoader struct {
	key func(ctx context.Context, n int64) (keystore.KeyFacts, error)
	n   atomic.Int64
}

func (l *funcLoader) LookupKey(ctx context.Context, _ []keystore.Digest) (keystore.KeyFacts, error) {
	return l.key(ctx, l.n.Add(1))
}

func (l *funcLoader) LookupKeyID(ctx context.Context, _ string) (keystore.KeyFacts, error) {
	return l.key(ctx, l.n.Add(1))
}

func (l *funcLoader) LookupSite(context.Context, string) (keystore.SiteFacts, error) {
	return keystore.SiteFacts{}, keystore.ErrNotFound
}

// TestFillNotJoinedAfterInvalidation: a request that arrives after an
// invalidation gets a read of its own, not the answer of a read that began
// before the write.
func TestFillNotJoinedAfterInvalidation(t *testing.T) {
	release, second := make(chan struct{}), make(chan struct{})
	l := &funcLoader{}
	l.key = func(_ context.Context, n int64) (keystore.KeyFacts, error) {
		f := keystore.KeyFacts{Key: keystore.Key{ID: "key_1"}}
		if n == 1 {
			<-release // the pre-revocation read, slow
			return f, nil
		}
		close(second)
		f.Key.Name = "after"
		return f, nil
	}
	c, err := keystore.NewCache(l, keystore.CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := []keystore.Digest{"d1"}
	first := make(chan error, 1)
	go func() { _, err := c.Key(context.Background(), d); first <- err }()
	for l.n.Load() == 0 {
		time.Sleep(time.Millisecond) // until the first read has begun
	}
	c.Invalidate(keystore.EntityKey, "key_1")
	got := make(chan keystore.KeyFacts, 1)
	go func() { f, _ := c.Key(context.Background(), d); got <- f }()
	select {
	case <-second:
	case <-time.After(10 * time.Second):
		t.Fatal("the request after the invalidation joined the read that began before it")
	}
	if f := <-got; f.Key.Name != "after" {
		t.Fatalf("after the invalidation: %+v", f)
	}
	close(release)
	<-first
}

// TestFillPanicIsUnavailable: a panic inside a store read is an
// unavailable store for the callers, not a crash.
func TestFillPanicIsUnavailable(t *testing.T) {
	l := &funcLoader{key: func(context.Context, int64) (keystore.KeyFacts, error) { panic("driver bug") }}
	c, err := keystore.NewCache(l, keystore.CacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Key(context.Background(), []keystore.Digest{"d1"}); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("panicking read: %v, want ErrUnavailable", err)
	}
}
