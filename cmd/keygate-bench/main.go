// Command keygate-bench is keygate's load tool (package bench), the same
// as `keygate bench`:
//
//	keygate-bench [flags]                        load a running keygate (see -h)
//	keygate-bench noop --grpc-addr A --http-addr B   the no-op ext_authz floor
//	keygate-bench startup --target A -- CMD…     time CMD's start to SERVING
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/keygate/keygate/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := bench.Main(ctx, []string{"keygate-bench"}, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "keygate-bench:", err)
		}
		os.Exit(1)
	}
}
