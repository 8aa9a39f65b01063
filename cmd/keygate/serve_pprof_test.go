package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestPprofOnlyOnLoopback(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, addr := range []string{"0.0.0.0:0", ":0", "localhost:0", "10.1.2.3:6060", "no-port"} {
		t.Setenv("KEYGATE_PPROF_ADDR", addr)
		if stop, err := startPprof(log); err == nil {
			stop()
			t.Errorf("KEYGATE_PPROF_ADDR=%s accepted; want only a loopback IP", addr)
		}
	}
	t.Setenv("KEYGATE_PPROF_ADDR", "")
	stop, err := startPprof(log)
	if err != nil {
		t.Fatalf("unset: %v", err)
	}
	stop()
}

func TestPprofServes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("KEYGATE_PPROF_ADDR", addr)
	stop, err := startPprof(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("status %d, body %.100q", resp.StatusCode, body)
	}
}
