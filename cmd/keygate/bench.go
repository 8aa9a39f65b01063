package main

import (
	"errors"
	"flag"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/bench"
)

// benchCommand is `keygate bench`: the load tool (package bench), which
// parses its own flags (keygate bench -h lists them).
func (e *environment) benchCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "bench [flags] | bench noop | bench startup --target A -- CMD…",
		Short: "load a running keygate (or the built-in no-op floor) and report latency, outcomes and server CPU",
		Long: `Load a running keygate over gRPC or HTTP forward-auth, open-loop at a rate or
closed-loop at a concurrency, with the fixed, realistic, flood or miss workload,
and compare with a no-op ext_authz server run the same way (README, "Measuring
it"). "keygate bench -h" lists the load flags.`,
		DisableFlagParsing: true,
		RunE: func(c *cobra.Command, args []string) error {
			err := bench.Main(c.Context(), []string{"keygate", "bench"}, args, e.getenv, e.stdout, e.stderr)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		},
	}
}
