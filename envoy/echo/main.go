// Command echo is the demo upstream of docker-compose.yml: it answers every
// request with the method, path and headers it received, so a user sees what
// keygate let through (the x-keygate-* identity headers, and no credential).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", ":8090", "listen address")
	name := flag.String("name", "upstream", "name reported in every answer (upstream or sandbox)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *addr, *name); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// echoed is what the upstream answers.
type echoed struct {
	Upstream string            `json:"upstream"`
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Headers  map[string]string `json:"headers"`
}

func handler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := echoed{Upstream: name, Method: r.Method, Path: r.RequestURI, Headers: map[string]string{"host": r.Host}}
		for k, vs := range r.Header {
			e.Headers[strings.ToLower(k)] = strings.Join(vs, ", ")
		}
		w.Header().Set("content-type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(e)
	})
}

func serve(ctx context.Context, addr, name string) error {
	srv := &http.Server{Addr: addr, Handler: handler(name), ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 64 << 10}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	slog.Info("echo serving", "addr", addr, "name", name)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
