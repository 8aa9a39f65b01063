// Package bench is keygate's load tool, as pgbench is PostgreSQL's: it
// seeds a store with a workload's accounts, sites and keys, sends Check
// requests over gRPC (or the HTTP forward-auth endpoints) open-loop at a
// target rate or closed-loop at a concurrency, and reports throughput,
// latency percentiles, outcomes by decision code, and the server's CPU
// seconds per request and RSS read from its /metrics. It can run the same
// load against a built-in no-op ext_authz server (the floor) and print
// keygate's figures as ratios to it.
//
// Open-loop latency is measured from each request's scheduled send time,
// so a server that falls behind shows its queueing instead of slowing the
// load down (coordinated omission).
package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Config is one bench run.
type Config struct {
	// Target is the server: host:port for gRPC, or http://host:port for
	// the forward-auth endpoint (Transport "http").
	Target    string
	Transport string // "grpc" or "http"
	// MetricsURL is the server's /metrics ("" skips CPU and RSS).
	MetricsURL string
	// Rate > 0 runs open-loop at that many requests per second; else
	// Concurrency workers run closed-loop.
	Rate        float64
	Concurrency int
	Duration    time.Duration
	Warmup      time.Duration

	Workload string // fixed, realistic, flood or miss
	// Store is the store to seed (sqlite:FILE or postgres://…), shared
	// with the server; KeyPrefix and Peppers must be the server's.
	Store     string
	KeyPrefix string
	Peppers   [][]byte
	Keys      int
	Sites     int
	// FloodShare is the share of flood requests with unknown keys.
	FloodShare float64
	Seed       uint64
	// TokenURL is where access tokens are minted (the server's HTTP
	// address); "" uses no tokens.
	TokenURL string

	// Floor runs the same load against a no-op ext_authz server started
	// with FloorCommand (e.g. [taskset -c 1 keygate-bench noop]).
	Floor        bool
	FloorCommand []string
	// SeedOnly seeds the store and stops (for start-up measurements).
	SeedOnly bool
}

// ParseFlags reads a bench command line. The defaults are a 10-second
// closed-loop run of the realistic workload against localhost:9191.
func ParseFlags(name string, args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Target, "target", "127.0.0.1:9191", "gRPC host:port, or http://host:port with --transport http")
	fs.StringVar(&c.Transport, "transport", "grpc", "grpc (ext_authz Check) or http (forward-auth, /forward-auth)")
	fs.StringVar(&c.MetricsURL, "metrics", "http://127.0.0.1:8080/metrics", "the server's /metrics for CPU and RSS (\"\" to skip)")
	fs.Float64Var(&c.Rate, "rate", 0, "open-loop requests per second (0: closed-loop at --concurrency)")
	fs.IntVar(&c.Concurrency, "concurrency", 16, "closed-loop workers (open-loop: ignored)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured duration")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "unmeasured load before it")
	fs.StringVar(&c.Workload, "workload", "realistic", "fixed, realistic, flood or miss")
	fs.StringVar(&c.Store, "store", "sqlite:keygate.db", "store to seed, shared with the server")
	fs.StringVar(&c.KeyPrefix, "key-prefix", "kg", "the server's key prefix")
	fs.IntVar(&c.Keys, "keys", 1000, "keys to create (miss: one request each)")
	fs.IntVar(&c.Sites, "sites", 100, "sites the keys are spread over")
	fs.Float64Var(&c.FloodShare, "flood-share", 0.5, "flood: share of requests with unknown well-formed keys")
	fs.Uint64Var(&c.Seed, "seed", 1, "random seed: the same seed makes the same keys' traffic")
	fs.StringVar(&c.TokenURL, "token-url", "http://127.0.0.1:8080", "server HTTP address to mint access tokens (realistic; \"\" for none)")
	fs.BoolVar(&c.Floor, "floor", false, "also run the load against a no-op ext_authz server and print ratios")
	floorCmd := fs.String("floor-command", "", "command that starts the no-op server (default: this program's noop)")
	fs.BoolVar(&c.SeedOnly, "seed-only", false, "seed the store and exit")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if *floorCmd != "" {
		c.FloorCommand = strings.Fields(*floorCmd)
	}
	return c, c.validate()
}

func (c Config) validate() error {
	switch {
	case c.Transport != "grpc" && c.Transport != "http":
		return fmt.Errorf("bench: --transport %q: want grpc or http", c.Transport)
	case c.Rate < 0 || c.Rate > 1e6:
		return errors.New("bench: --rate: want 0 to 1,000,000")
	case c.Rate == 0 && (c.Concurrency < 1 || c.Concurrency > 10_000):
		return errors.New("bench: --concurrency: want 1 to 10,000")
	case c.Duration <= 0:
		return errors.New("bench: --duration must be positive")
	case c.Keys < 1 || c.Keys > 10_000_000 || c.Sites < 1 || c.Sites > c.Keys:
		return errors.New("bench: --keys 1..10,000,000 and --sites 1..keys")
	case c.FloodShare < 0 || c.FloodShare > 1:
		return errors.New("bench: --flood-share: want 0 to 1")
	}
	switch c.Workload {
	case "fixed", "realistic", "flood", "miss":
		return nil
	}
	return fmt.Errorf("bench: --workload %q: want fixed, realistic, flood or miss", c.Workload)
}
