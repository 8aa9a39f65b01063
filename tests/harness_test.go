// Package tests holds keygate's end-to-end tests: they build the keygate
// binary once, start it as a separate process, drive it with its own CLI and
// talk to it over real gRPC and HTTP, as Envoy and operators do.
package tests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/internal/syncbuf"
	"github.com/keygate/keygate/keystore"
)

// binary is the keygate binary built once for the whole package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keygate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "keygate")
	args := append([]string{"build", "-o", binary}, buildTags...)
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/keygate")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building keygate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Env is one store (and the environment every process shares) that CLI
// commands and servers run against.
type Env struct {
	t     *testing.T
	Store string
	Vars  []string // extra KEYGATE_* variables for every process
	// Dir is the processes' working directory ("": the test's).
	Dir string
	// environ replaces the test's own environment when set.
	environ []string
}

// NewEnv makes a fresh SQLite store in a temporary directory. The database
// is created here, as `keygate serve` would: management commands refuse to
// create one.
func NewEnv(t *testing.T) *Env {
	t.Helper()
	file := filepath.Join(t.TempDir(), "keygate.db")
	st, err := keystore.OpenSQLite(context.Background(), file, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return &Env{t: t, Store: "sqlite:" + file}
}

func (e *Env) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = e.Dir
	cmd.Env = e.environ
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	if e.Store != "" {
		cmd.Env = append(cmd.Env, "KEYGATE_STORE="+e.Store)
	}
	cmd.Env = append(cmd.Env, e.Vars...)
	return cmd
}

// exitCode is the exit status a command's error carries: 0 for none, -1
// when the process did not run to an exit.
func exitCode(err error) int {
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	default:
		return -1
	}
}

// CLI runs a keygate command to completion and returns its stdout; it fails
// the test on a non-zero exit.
func (e *Env) CLI(args ...string) string {
	e.t.Helper()
	out, errOut, err := e.TryCLI(args...)
	if err != nil {
		e.t.Fatalf("keygate %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// TryCLI runs a keygate command and returns stdout, stderr and the exit error.
func (e *Env) TryCLI(args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := e.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// NewKey creates a key with the CLI and returns it (the first stdout line).
func (e *Env) NewKey(site, mode string, extra ...string) string {
	e.t.Helper()
	out := e.CLI(append([]string{"keys", "create", "--site", site, "--mode", mode}, extra...)...)
	key, _, _ := strings.Cut(out, "\n")
	return strings.TrimSpace(key)
}

// Seed creates account on plan and its site, with the CLI: where most
// tests start.
func (e *Env) Seed(account, plan, site string) {
	e.t.Helper()
	e.CLI("accounts", "create", "--id", account, "--plan", plan)
	e.CLI("sites", "create", "--id", site, "--account", account)
}

// Server is a running `keygate serve` process.
type Server struct {
	GRPCAddr, HTTPAddr, AdminAddr string
	cmd                           *exec.Cmd
	logs                          *syncBuffer
	conn                          *grpc.ClientConn
	client                        authv3.AuthorizationClient
}

var listening = regexp.MustCompile(`msg="keygate serving" grpc=(\S+) http=(\S+)`)
var adminListening = regexp.MustCompile(`admin=(\S+)`)

// Serve starts `keygate serve` on free loopback ports with extra flags, waits
// until it is listening, and stops it when the test ends.
func (e *Env) Serve(flags ...string) *Server {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, flags...)
	cmd := e.command(ctx, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	logs := &syncBuffer{}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	cmd.Stdout = logs
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	s := &Server{cmd: cmd, logs: logs}
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			logs.WriteString(line + "\n")
			if m := listening.FindStringSubmatch(line); m != nil && !sent {
				admin := ""
				if a := adminListening.FindStringSubmatch(line); a != nil {
					admin = a[1]
				}
				ready <- []string{m[1], m[2], admin}
				sent = true
			}
		}
		close(ready)
	}()
	e.t.Cleanup(func() {
		if s.conn != nil {
			s.conn.Close()
		}
		cancel()
		_ = cmd.Wait()
		if e.t.Failed() {
			e.t.Logf("keygate serve logs:\n%s", logs.String())
		}
	})
	select {
	case addrs, ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			e.t.Fatalf("keygate serve exited before listening:\n%s", logs.String())
		}
		s.GRPCAddr, s.HTTPAddr, s.AdminAddr = addrs[0], addrs[1], addrs[2]
	case <-time.After(60 * time.Second):
		e.t.Fatalf("keygate serve did not start within a minute:\n%s", logs.String())
	}
	conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	s.conn, s.client = conn, authv3.NewAuthorizationClient(conn)
	return s
}

// Logs returns what the server printed so far.
func (s *Server) Logs() string { return s.logs.String() }

// Conn is the server's gRPC connection, for other services (health).
func (s *Server) Conn() *grpc.ClientConn { return s.conn }

// Check sends one CheckRequest, as Envoy would, and fails the test on a gRPC
// error: keygate must answer every request with a CheckResponse.
func (s *Server) Check(t *testing.T, method, path string, headers map[string]string) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.client.Check(ctx, CheckRequest(method, path, headers))
	if err != nil {
		t.Fatalf("Check %s %s: gRPC error %v (keygate must never fail Check)", method, path, err)
	}
	return resp
}

// CheckRequest builds an Envoy CheckRequest with lower-case header names.
func CheckRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	h := make(map[string]string, len(headers))
	host := "api.example.test"
	for k, v := range headers {
		k = strings.ToLower(k)
		if k == "host" || k == ":authority" {
			host = v
			continue
		}
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: host, Headers: h, Scheme: "https", Protocol: "HTTP/1.1"},
	}}}
}

// Metric reads one counter or gauge from /metrics (0 if absent).
func (s *Server) Metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return v
		}
	}
	return 0
}

// Eventually polls cond every 10 ms until it holds or the timeout passes.
// It bounds a wait; it does not assert on time.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncBuffer holds a server's logs, written from its goroutines.
type syncBuffer = syncbuf.Buffer
