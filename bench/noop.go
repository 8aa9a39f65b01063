package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// noop allows every Check without reading it: the floor, what any ext_authz
// server costs over the same gRPC stack.
type noop struct {
	authv3.UnimplementedAuthorizationServer
}

func (noop) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
}

// RunNoop serves the no-op ext_authz server on grpcAddr (with grpc.health.v1)
// and, on httpAddr, /metrics with the process collectors keygate has and
// 200 for every other path (the forward-auth floor), until ctx ends.
func RunNoop(ctx context.Context, grpcAddr, httpAddr string) error {
	gl, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		return fmt.Errorf("bench: noop: %w", err)
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		gl.Close()
		return fmt.Errorf("bench: noop: %w", err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, noop{})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errs := make(chan error, 2)
	go func() { errs <- gs.Serve(gl) }()
	go func() { errs <- srv.Serve(hl) }()
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	gs.Stop()
	shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(shutdown) //nolint:errcheck // best effort on the way out
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return err
}
