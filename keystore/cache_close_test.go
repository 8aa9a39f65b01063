package keystore

import (
	"context"
	"testing"
)

// gatedLoader is a store whose key reads wait for release.
type gatedLoader struct {
	storeLikeLoader
	reading chan struct{}
	release chan struct{}
}

func (l *gatedLoader) LookupKey(ctx context.Context, digests []Digest) (KeyFacts, error) {
	l.reading <- struct{}{}
	<-l.release
	return l.storeLikeLoader.LookupKey(ctx, digests)
}

// A fill that outlives its request (it runs detached) and ends after
// Close stores nothing: before, its ristretto Set raced with Close
// (TestCheckFailsClosed failed about once in 50 runs under -race).
func TestFillAfterClose(t *testing.T) {
	l := &gatedLoader{storeLikeLoader: storeLikeLoader{sites: 10}, reading: make(chan struct{}), release: make(chan struct{})}
	c, err := NewCache(l, CacheConfig{MaxEntries: 1000})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Key(context.Background(), []Digest{testDigest(7)})
		done <- err
	}()
	<-l.reading
	c.Close()
	c.Close() // twice is fine
	close(l.release)
	if err := <-done; err != nil {
		t.Fatalf("the read that began before Close: %v", err)
	}
	if c.buckets.dir[0].Load() != nil || c.byID.len() != 0 {
		t.Error("a fill stored into a closed cache")
	}
}
