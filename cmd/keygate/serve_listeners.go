package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/webhooks"
)

// shutdownGrace is how long in-flight requests get to finish on shutdown.
const shutdownGrace = 10 * time.Second

// listener is one server of `keygate serve`: bound by bind, run by serve
// until stop is called.
type listener struct {
	name, addr string
	lis        net.Listener
	run        func(net.Listener) error // returns nil once stopped
	stop       func(context.Context)
}

func (l *listener) serve() error {
	if err := l.run(l.lis); err != nil {
		return fmt.Errorf("%s listener on %s: %w", l.name, l.lis.Addr(), err)
	}
	return nil
}

func httpListener(name, addr string, hs *http.Server) *listener {
	return &listener{name: name, addr: addr,
		run: func(lis net.Listener) error {
			if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
		stop: func(ctx context.Context) { _ = hs.Shutdown(ctx) },
	}
}

func grpcListener(name, addr string, g *grpc.Server) *listener {
	// A shutdown that comes before Serve started (a signal right at start-up)
	// makes Serve return ErrServerStopped: that is a stop, not a failure.
	serve := func(lis net.Listener) error {
		if err := g.Serve(lis); !errors.Is(err, grpc.ErrServerStopped) {
			return err
		}
		return nil
	}
	return &listener{name: name, addr: addr, run: serve,
		stop: func(ctx context.Context) {
			stopped := make(chan struct{})
			go func() { g.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-ctx.Done():
				g.Stop()
			}
		},
	}
}

// bind opens every listener, or none.
func bind(ls []*listener) error {
	for i, l := range ls {
		lis, err := net.Listen("tcp", l.addr)
		if err != nil {
			for _, opened := range ls[:i] {
				opened.lis.Close()
			}
			return fmt.Errorf("%s listener: %w (is another keygate running? set --%s-addr)", l.name, err, l.name)
		}
		l.lis = lis
	}
	return nil
}

// shutdown stops every listener within shutdownGrace.
func shutdown(ctx context.Context, ls []*listener) {
	ctx, cancel := context.WithTimeout(ctx, shutdownGrace)
	defer cancel()
	for _, l := range ls {
		l.stop(ctx)
	}
}

// adminServer is the admin API over the core's store and policy.
func adminServer(token string, named map[string]string, c *core, dest webhooks.Destinations, log *slog.Logger) *http.Server {
	return &http.Server{Handler: &admin.Handler{Store: c.store, Token: token, Tokens: named, Log: log, Policy: c.policy.engine, Webhooks: dest},
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10}
}
