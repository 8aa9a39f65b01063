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
	"syscall"

	"github.com/keygate/keygate/keystore"
)

func main() {
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

// errUsage marks usage mistakes (exit status 2). Returned bare, it means
// the usage text was already printed.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

const usage = `keygate — API-key authorizer for Envoy

Usage:
  keygate serve [flags]                 run the ext_authz gRPC server and HTTP endpoints
  keygate accounts create|update ...    manage accounts
  keygate sites create|update|rotate-key ...
  keygate keys create|list|revoke|import ...   manage keys
  keygate limits set|show ...           per-site / per-account limit overrides
  keygate usage --site ID               a site's monthly quota usage
  keygate check [flags]                 explain the decision for one request
  keygate audit [--target ID] [--json]  who changed what (the audit trail of writes)
  keygate policy test [DIR]             run the Rego tests of a policy directory

Every flag can also be set as KEYGATE_<FLAG> (for example KEYGATE_STORE).
Run "keygate COMMAND -h" for a command's flags.
`

// run is the whole program; tests call it directly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	env := environment{getenv: getenv, stdin: os.Stdin, stdout: stdout, stderr: stderr}
	// Every write a command makes is audited as its operator's.
	ctx = keystore.WithActor(ctx, cliActor(getenv))
	switch args[0] {
	case "serve":
		return env.serve(ctx, args[1:])
	case "accounts":
		return env.accounts(ctx, args[1:])
	case "sites":
		return env.sites(ctx, args[1:])
	case "keys":
		return env.keys(ctx, args[1:])
	case "limits":
		return env.limitsCmd(ctx, args[1:])
	case "usage":
		return env.usage(ctx, args[1:])
	case "check":
		return env.check(ctx, args[1:])
	case "audit":
		return env.audit(ctx, args[1:])
	case "policy":
		return env.policy(ctx, args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "keygate: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

// environment is what every command may touch of the outside world.
type environment struct {
	getenv         func(string) string
	stdin          io.Reader // keys import reads the key here
	stdout, stderr io.Writer
}
