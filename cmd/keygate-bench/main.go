// Command keygate-bench is keygate's load tool (package bench):
//
//	keygate-bench [flags]                        load a running keygate (see -h)
//	keygate-bench noop --grpc-addr A --http-addr B   the no-op ext_authz floor
//	keygate-bench startup --target A -- CMD…     time CMD's start to SERVING
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/keygate/keygate/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(os.Stderr, "keygate-bench:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "noop":
			fs := flag.NewFlagSet("noop", flag.ContinueOnError)
			grpcAddr := fs.String("grpc-addr", "127.0.0.1:9292", "gRPC address")
			httpAddr := fs.String("http-addr", "127.0.0.1:8282", "HTTP address (/metrics)")
			if err := fs.Parse(args[1:]); err != nil {
				return err
			}
			return bench.RunNoop(ctx, *grpcAddr, *httpAddr)
		case "startup":
			fs := flag.NewFlagSet("startup", flag.ContinueOnError)
			target := fs.String("target", "127.0.0.1:9191", "gRPC address to poll")
			if err := fs.Parse(args[1:]); err != nil {
				return err
			}
			return bench.Startup(ctx, *target, fs.Args(), stdout, stderr)
		}
	}
	cfg, err := bench.ParseFlags("keygate-bench", args, stderr)
	if err != nil {
		return err
	}
	// As keygate serve reads it: never a flag, so it stays out of ps.
	if p := getenv("KEYGATE_PEPPER"); p != "" {
		for _, v := range strings.Split(p, ",") {
			cfg.Peppers = append(cfg.Peppers, []byte(v))
		}
	}
	return bench.Run(ctx, cfg, stdout, stderr)
}
