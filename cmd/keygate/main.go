// Command keygate is an API-key authorizer for Envoy: `keygate serve` runs
// the ext_authz gRPC server, and the management subcommands edit the store
// that a running server follows.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	_ "github.com/keygate/keygate/internal/prefault" // initialised early, for the start: see its doc
	"github.com/keygate/keygate/keystore"
)

func main() {
	runtime.MemProfileRate = memProfileRate(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		// A bare errUsage was printed with the usage text already; anything
		// else, usage mistakes included, is said once here.
		if err != errUsage { //nolint:errorlint // identity is the point
			fmt.Fprintln(os.Stderr, "keygate:", err)
		}
		os.Exit(exitCode(err))
	}
}

// memProfileRate is the runtime's memory-profiling rate for this process:
// its default (an allocation sampled every 512 KiB, each with a stack
// walk) when the profiler listener is asked for (KEYGATE_PPROF_ADDR,
// serve_pprof.go), the only reader of the heap profile; off otherwise.
// The samples cost serve's start ~2 M instructions to SERVING (7%), most
// of them on the large buffers the key cache and the gRPC server make.
func memProfileRate(getenv func(string) string) int {
	if getenv("KEYGATE_PPROF_ADDR") == "" {
		return 0
	}
	return runtime.MemProfileRate
}

// errUsage marks usage mistakes (exit status 2). Returned bare, it means
// the usage text was already printed.
var errUsage = errors.New("usage")

// errDenied is `keygate check`'s answer when the request would be denied
// (exit status 3, README): the explanation was printed already.
var errDenied = errors.New("the request would be denied")

func exitCode(err error) int {
	switch {
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errDenied), errors.Is(err, errChanged):
		return 3
	}
	return 1
}

// run is the whole program: main and the tests call it. Every command
// writes to stdout and stderr only, logs included.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	env := &environment{getenv: getenv, stdin: os.Stdin, stdout: stdout, stderr: stderr}
	// Every write a command makes is audited as its operator's, looked up
	// when the first write needs it (none before serve's first SERVING).
	ctx = keystore.WithLazyActor(ctx, func() string { return cliActor(getenv) })
	return env.execute(ctx, args, stdout, stderr)
}

// environment is what every command may touch of the outside world.
type environment struct {
	getenv         func(string) string
	stdin          io.Reader // keys import reads the key here
	stdout, stderr io.Writer
}
