// Package redistest connects tests to the Redis that KEYGATE_TEST_REDIS
// names, each test under key names no other test uses. Only tests import
// it.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Client connects to KEYGATE_TEST_REDIS, or skips the test when it is not
// set, and returns a key prefix no other test uses; it deletes the
// prefix's keys when the test ends.
func Client(t testing.TB) (*redis.Client, string) {
	t.Helper()
	url := os.Getenv("KEYGATE_TEST_REDIS")
	if url == "" {
		t.Skip("KEYGATE_TEST_REDIS not set (e.g. redis://127.0.0.1:6379/0): skipping the Redis test")
	}
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opts)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	prefix := "keygate-test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := client.Keys(ctx, "rate:"+prefix+"*").Result()
		if len(keys) > 0 {
			client.Del(ctx, keys...)
		}
		client.Close()
	})
	return client, prefix
}
