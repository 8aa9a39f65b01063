package bench

import (
	"context"
	"flag"
	"io"
	"os"
	"strings"
)

// Main is the load tool's command line, shared by `keygate bench` and
// `keygate-bench`: args are what follows the command (self, e.g.
// [keygate bench]), with the subcommands "noop" (the no-op ext_authz
// floor) and "startup" (time a command to SERVING); anything else loads a
// keygate. The floor is started as self + "noop" unless --floor-cmd says
// otherwise.
func Main(ctx context.Context, self, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	name := strings.Join(self, " ")
	if len(args) > 0 {
		switch args[0] {
		case "noop":
			fs := flag.NewFlagSet(name+" noop", flag.ContinueOnError)
			fs.SetOutput(stderr)
			grpcAddr := fs.String("grpc-addr", "127.0.0.1:9292", "gRPC address")
			httpAddr := fs.String("http-addr", "127.0.0.1:8282", "HTTP address (/metrics)")
			if err := fs.Parse(args[1:]); err != nil {
				return err
			}
			return RunNoop(ctx, *grpcAddr, *httpAddr)
		case "startup":
			fs := flag.NewFlagSet(name+" startup", flag.ContinueOnError)
			fs.SetOutput(stderr)
			target := fs.String("target", "127.0.0.1:9191", "gRPC address to poll")
			if err := fs.Parse(args[1:]); err != nil {
				return err
			}
			return Startup(ctx, *target, fs.Args(), stdout, stderr)
		}
	}
	cfg, err := ParseFlags(name, args, stderr)
	if err != nil {
		return err
	}
	if len(cfg.FloorCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.FloorCommand = append(append([]string{exe}, self[1:]...), "noop")
	}
	// As keygate serve reads it: never a flag, so it stays out of ps.
	if p := getenv("KEYGATE_PEPPER"); p != "" {
		for _, v := range strings.Split(p, ",") {
			cfg.Peppers = append(cfg.Peppers, []byte(v))
		}
	}
	return Run(ctx, cfg, stdout, stderr)
}
