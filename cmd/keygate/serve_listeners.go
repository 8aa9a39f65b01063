package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

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

// newGRPCServer is the ext_authz gRPC server: CheckRequests are small.
func newGRPCServer(deep *deepPool) *grpc.Server {
	return grpc.NewServer(
		grpc.MaxRecvMsgSize(4<<20),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second}),
		streamWorkers(),
		deepStacks(deep),
		serverCodec(),
	)
}

// newHTTPServer serves h on the HTTP listener. Bodies are small (token
// exchange ≤ 4 KiB, forward-auth none): a client that trickles one in is
// cut off rather than holding a connection.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
}

// listeners are serve's listeners, bound: gRPC, HTTP and, when an admin
// token is set, the admin API.
func (cfg *serveConfig) listeners(c *core, g *grpc.Server, hs *http.Server, log *slog.Logger) ([]*listener, error) {
	ls := []*listener{grpcListener("grpc", cfg.grpcAddr, g), httpListener("http", cfg.httpAddr, hs)}
	if cfg.adminToken != "" || len(cfg.adminTokens) > 0 {
		ls = append(ls, httpListener("admin", cfg.adminAddr, adminServer(cfg.adminToken, cfg.adminTokens, c, cfg.destinations(), log)))
	} else {
		log.Info("admin API off: set KEYGATE_ADMIN_TOKEN (or KEYGATE_ADMIN_TOKENS) to enable it")
	}
	return ls, bind(ls)
}

// lifecycle runs every runner and serves every (bound) listener in one
// errgroup: the first listener to fail, or ctx ending, shuts them all
// down. attrs go on the "keygate serving" line.
func lifecycle(ctx context.Context, listeners []*listener, runners []func(context.Context), log *slog.Logger, attrs ...any) error {
	group, gctx := errgroup.WithContext(ctx)
	for _, runner := range runners {
		group.Go(func() error { runner(gctx); return nil })
	}
	for _, l := range listeners {
		group.Go(l.serve)
	}
	group.Go(func() error {
		<-gctx.Done()
		if ctx.Err() != nil {
			log.Info("shutting down")
		}
		shutdown(context.WithoutCancel(ctx), listeners)
		return nil
	})
	serving := []any{}
	for _, l := range listeners {
		serving = append(serving, l.name, l.lis.Addr().String())
	}
	log.Info("keygate serving", append(serving, attrs...)...)
	if err := group.Wait(); err != nil {
		log.Error("listener failed", "err", err)
		return err
	}
	return nil
}
