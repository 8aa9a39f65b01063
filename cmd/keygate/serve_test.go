package main

import (
	"context"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keygate/keygate/internal/syncbuf"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer = syncbuf.Buffer

// run serves with its logs in the writer it is given, and returns nil once
// its context ends and every listener and background loop has stopped.
func TestServeLifecycleCapturedLogs(t *testing.T) {
	env := map[string]string{
		"KEYGATE_STORE":       "sqlite:" + filepath.Join(t.TempDir(), "keygate.db"),
		"KEYGATE_ADMIN_TOKEN": "admin-token-0123456789",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
			func(k string) string { return env[k] }, &logs, &logs)
	}()
	deadline := time.After(30 * time.Second)
	// The first SERVING logs the CPU used to reach it (README, "Measuring it").
	for !strings.Contains(logs.String(), `msg="keygate serving"`) || !strings.Contains(logs.String(), `msg="first SERVING"`) {
		select {
		case err := <-done:
			t.Fatalf("serve returned %v before serving:\n%s", err, logs.String())
		case <-deadline:
			t.Fatalf("serve did not start:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !regexp.MustCompile(`msg="first SERVING" cpu_to_serving=[0-9.]+[µm]?s\n`).MatchString(logs.String()) {
		t.Errorf("the first SERVING line has no cpu_to_serving:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "admin=127.0.0.1:") {
		t.Errorf("the serving line does not name the admin listener:\n%s", logs.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve after cancel: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "shutting down") {
		t.Errorf("no shutdown in the captured logs:\n%s", logs.String())
	}
}

// A listener that cannot bind stops serve with an error naming it, and
// nothing keeps running.
func TestServeListenerFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	env := map[string]string{"KEYGATE_STORE": "sqlite:" + filepath.Join(t.TempDir(), "keygate.db")}
	var logs lockedBuffer
	err = run(context.Background(), []string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", busy.Addr().String()},
		func(k string) string { return env[k] }, &logs, &logs)
	if err == nil || !strings.Contains(err.Error(), "http listener") || !strings.Contains(err.Error(), "--http-addr") {
		t.Fatalf("serve with a busy --http-addr: %v", err)
	}
}

// The Go collector and the build info are made at the first scrape, not
// when serve registers them, and then scraped as before.
func TestRegistryCollectorsAtFirstScrape(t *testing.T) {
	made := 0
	reg := prometheus.NewRegistry()
	reg.MustRegister(&lazyCollector{make: func() prometheus.Collector { made++; return collectors.NewGoCollector() }})
	registerBuildInfo(reg)
	if made != 0 {
		t.Fatalf("Go collector made %d times at Register, want 0", made)
	}
	for range 2 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, f := range families {
			got[f.GetName()] = true
		}
		for _, want := range []string{"go_goroutines", "go_gc_duration_seconds", "go_memstats_heap_alloc_bytes", "keygate_build_info"} {
			if !got[want] {
				t.Errorf("no %s in %d families", want, len(families))
			}
		}
	}
	if made != 1 {
		t.Fatalf("Go collector made %d times in two scrapes, want 1", made)
	}
}
