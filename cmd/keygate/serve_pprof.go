package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// startPprof serves Go's profiler (/debug/pprof/) on KEYGATE_PPROF_ADDR when
// it is set, for profiling a running serve under load (see README "Measuring
// it"). Profiles reveal internals, so only a loopback address is accepted.
// The returned stop closes the listener.
func startPprof(log *slog.Logger) (stop func(), err error) {
	addr := os.Getenv("KEYGATE_PPROF_ADDR")
	if addr == "" {
		return func() {}, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("KEYGATE_PPROF_ADDR %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("KEYGATE_PPROF_ADDR %q: want a loopback IP address and port", addr)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("KEYGATE_PPROF_ADDR: %w", err)
	}
	l := httpListener("pprof", addr, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second})
	l.lis = lis
	go func() {
		if err := l.serve(); err != nil {
			log.Warn("pprof listener stopped", "err", err)
		}
	}()
	log.Info("pprof listening", "addr", lis.Addr().String())
	return func() { l.stop(context.Background()) }, nil
}
