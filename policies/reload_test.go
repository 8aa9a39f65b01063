package policies

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// proInput is a found live key of an active pro account.
func proInput() *Input {
	return &Input{
		Request:    Request{Method: "GET", Host: "api.example.test", Path: "/v1/videos", PathOK: true},
		Credential: Credential{Status: CredFound, Kind: "key", Scheme: "bearer"},
		Key:        &Key{ID: "key_1", Mode: "live"},
		Site:       &Site{ID: "site-a", Account: "acct", Active: true},
		Account:    &Account{ID: "acct", Plan: "pro", Status: "active"},
	}
}

func concurrency(t *testing.T, e *Engine) string {
	t.Helper()
	d, err := e.Decide(context.Background(), proInput())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allow {
		return d.Code
	}
	return d.Headers["x-keygate-concurrency"]
}

const proTest = "package keygate.layer_test\n\nimport rego.v1\n\ntest_pro_has_api if data.keygate.config.plans.pro.api\n"

func newReloader(t *testing.T, files map[string]string) (*Reloader, *bytes.Buffer) {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	logs := &bytes.Buffer{}
	r := &Reloader{Dir: dir, Log: slog.New(slog.NewTextHandler(logs, nil))}
	if _, err := r.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r, logs
}

func TestReloadSwapsGoodVersions(t *testing.T) {
	r, _ := newReloader(t, map[string]string{"data.yaml": layerData, "layer_test.rego": proTest})
	if got := concurrency(t, r.Engine); got != "4" {
		t.Fatalf("initial concurrency = %q, want 4", got)
	}
	if changed, err := r.Reload(context.Background()); changed || err != nil {
		t.Fatalf("unchanged directory: Reload = %v, %v", changed, err)
	}
	writeFiles(t, r.Dir, map[string]string{"data.yaml": strings.Replace(layerData, "concurrency: 4", "concurrency: 7", 1)})
	if changed, err := r.Reload(context.Background()); !changed || err != nil {
		t.Fatalf("Reload = %v, %v; want a successful reload", changed, err)
	}
	if got := concurrency(t, r.Engine); got != "7" {
		t.Errorf("concurrency after reload = %q, want 7", got)
	}
	s := r.Status()
	if s.Successes != 1 || s.Failures != 0 || !s.LastOK || s.Tests != 1 {
		t.Errorf("status = %+v", s)
	}
}

func TestReloadKeepsLastGoodPolicy(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		err   string
	}{
		{"syntax error", map[string]string{"extra.rego": "package keygate.authz\n\nimport rego.v1\n\nbroken if {\n"}, "rego_parse_error"},
		{"compile error", map[string]string{"extra.rego": "package keygate.authz\n\nimport rego.v1\n\nx := y\n"}, "rego_unsafe_var_error"},
		{"bad data", map[string]string{"data.yaml": "keygate: [\n"}, "data.yaml"},
		{"failing test", map[string]string{"data.yaml": strings.Replace(layerData, "pro: {concurrency: 4}", "pro: {concurrency: 9, api: false}", 1)}, "test_pro_has_api"},
		{"forbidden builtin", map[string]string{"extra.rego": "package keygate.authz\n\nimport rego.v1\n\nleak := http.send({\"method\": \"GET\", \"url\": \"http://x\"})\n"}, "http.send"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, logs := newReloader(t, map[string]string{"data.yaml": layerData, "layer_test.rego": proTest})
			writeFiles(t, r.Dir, tt.files)
			changed, err := r.Reload(context.Background())
			if !changed || err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Reload = %v, %v; want a failure mentioning %q", changed, err, tt.err)
			}
			if got := concurrency(t, r.Engine); got != "4" {
				t.Errorf("after a failed reload concurrency = %q, want the old policy's 4", got)
			}
			s := r.Status()
			if s.Failures != 1 || s.LastOK || !strings.Contains(s.LastError, tt.err) {
				t.Errorf("status = %+v", s)
			}
			if !strings.Contains(logs.String(), "keeping the last good policy") {
				t.Errorf("failure not logged:\n%s", logs)
			}
			// The same broken version is not retried (or re-reported).
			if changed, _ := r.Reload(context.Background()); changed {
				t.Error("an unchanged broken version was tried again")
			}
		})
	}
}

func TestReloadStartFailsOnFailingTests(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"data.yaml": layerData, "layer_test.rego": strings.Replace(proTest, "pro.api", "free.api", 1)})
	r := &Reloader{Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if _, err := r.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "test_pro_has_api") {
		t.Fatalf("Load = %v; want the failing test named", err)
	}
}

// Decisions made while reloads happen never fail and always come from one
// whole policy (old or new).
func TestReloadUnderLoad(t *testing.T) {
	r, _ := newReloader(t, map[string]string{"data.yaml": layerData, "layer_test.rego": proTest})
	var stop atomic.Bool
	var bad atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				d, err := r.Engine.Decide(context.Background(), proInput())
				if c := d.Headers["x-keygate-concurrency"]; err != nil || !d.Allow || (c != "4" && c != "5") {
					bad.Add(1)
				}
			}
		})
	}
	for i := range 10 {
		c := []string{"5", "4"}[i%2]
		writeFiles(t, r.Dir, map[string]string{"data.yaml": strings.Replace(layerData, "concurrency: 4", "concurrency: "+c, 1)})
		if _, err := r.Reload(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d decisions failed or were wrong during reloads", bad.Load())
	}
	if s := r.Status(); s.Successes != 10 {
		t.Errorf("successes = %d, want 10", s.Successes)
	}
}
