package main

import (
	"context"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// stubAuthorizer answers every Check with the same allow, so that what a
// benchmark counts is the transport: serve's gRPC server, codec and pool.
type stubAuthorizer struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
}

func (s stubAuthorizer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.resp, nil
}

// BenchmarkServeGRPC is one Check through serve's gRPC server (its options,
// codec and deep pool) over loopback TCP, from four callers on one
// connection as keygate-bench --concurrency 4 sends them. The client's
// cost is counted too; compare builds of the server, not absolute figures
// (valgrind --tool=callgrind counts instructions whatever the other core
// does).
func BenchmarkServeGRPC(b *testing.B) {
	g := newGRPCServer(&deepPool{})
	authv3.RegisterAuthorizationServer(g, stubAuthorizer{resp: checkResponses()[0]})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go g.Serve(lis) //nolint:errcheck // stopped below
	defer g.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	req := envoyCheckRequest(false)
	if _, err := client.Check(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.Check(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
