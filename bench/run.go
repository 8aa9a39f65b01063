package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Run seeds the workload, loads the server at cfg.Target, and with
// cfg.Floor the no-op server too, printing the figures (and ratios) to
// stdout and progress to stderr.
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	t, err := seed(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if cfg.SeedOnly {
		return nil
	}
	// Let the server follow the change log to the new keys.
	time.Sleep(1500 * time.Millisecond)
	mode := fmt.Sprintf("closed-loop, %d workers", cfg.Concurrency)
	if cfg.Rate > 0 {
		mode = fmt.Sprintf("open-loop at %.0f/s", cfg.Rate)
	}
	fmt.Fprintf(stdout, "workload %s, %s, %s, %s (warm-up %s), seed %d\n", cfg.Workload, cfg.Transport, mode, cfg.Duration, cfg.Warmup, cfg.Seed)
	k, err := loadTarget(ctx, cfg, "keygate", t)
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, header)
	k.print(stdout)
	if !cfg.Floor {
		return nil
	}
	f, err := floor(ctx, cfg, t, stderr)
	if err != nil {
		return err
	}
	f.print(stdout)
	printRatios(stdout, k, f)
	return nil
}

func loadTarget(ctx context.Context, cfg Config, name string, t *traffic) (result, error) {
	newSender := grpcSender
	if cfg.Transport == "http" {
		newSender = httpSender
	}
	send, closeSender, err := newSender(cfg.Target)
	if err != nil {
		return result{}, err
	}
	defer closeSender()
	return load(ctx, cfg, name, t, send)
}

// floor starts the no-op server, replays the same traffic (same seed)
// against it and stops it.
func floor(ctx context.Context, cfg Config, t *traffic, stderr io.Writer) (result, error) {
	grpcAddr, httpAddr, err := freeAddr(), freeAddr(), error(nil)
	if grpcAddr == "" || httpAddr == "" {
		return result{}, errors.New("bench: floor: no free port")
	}
	command := cfg.FloorCommand
	if len(command) == 0 {
		self, err := os.Executable()
		if err != nil {
			return result{}, fmt.Errorf("bench: floor: %w", err)
		}
		command = []string{self, "noop"}
	}
	cmd := exec.CommandContext(ctx, command[0], append(command[1:], "--grpc-addr", grpcAddr, "--http-addr", httpAddr)...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("bench: floor: %w", err)
	}
	defer func() {
		cmd.Process.Kill() //nolint:errcheck // it is ours and must go
		cmd.Wait()         //nolint:errcheck // killed
	}()
	if _, err = waitServing(ctx, grpcAddr, 10*time.Second); err != nil {
		return result{}, err
	}
	t.reset()
	fc := cfg
	fc.MetricsURL = "http://" + httpAddr + "/metrics"
	fc.Target = grpcAddr
	if cfg.Transport == "http" {
		fc.Target = "http://" + httpAddr
	}
	return loadTarget(ctx, fc, "floor", t)
}

// reset replays the workload's choices from the start.
func (t *traffic) reset() {
	t.rng = rand.New(rand.NewPCG(t.cfg.Seed, t.cfg.Seed^0x6b657967617465))
	t.n = 0
	t.used = map[string]bool{}
	if len(t.keys) > 1 {
		t.zipf = rand.NewZipf(t.rng, 1.1, 1, uint64(len(t.keys)-1))
	}
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ""
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// waitServing polls grpc.health.v1 at addr until it answers SERVING and
// returns how long that took.
func waitServing(ctx context.Context, addr string, limit time.Duration) (time.Duration, error) {
	began := time.Now()
	for time.Since(began) < limit {
		// A connection per attempt: one connection would wait out gRPC's
		// reconnect backoff (a second) after the first refused dial.
		if serving(ctx, addr) {
			return time.Since(began), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, fmt.Errorf("bench: %s not SERVING after %s", addr, limit)
}

func serving(ctx context.Context, addr string) bool {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(c, &healthpb.HealthCheckRequest{})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}
