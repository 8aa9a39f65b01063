package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"--rate", "1000", "--workload", "flood", "--seed", "7"}, true},
		{[]string{"--workload", "nope"}, false},
		{[]string{"--transport", "udp"}, false},
		{[]string{"--rate", "-1"}, false},
		{[]string{"--keys", "10", "--sites", "11"}, false},
		{[]string{"--flood-share", "2"}, false},
	} {
		_, err := ParseFlags("bench", c.args, io.Discard)
		if (err == nil) != c.ok {
			t.Errorf("%v: err = %v, want ok=%t", c.args, err, c.ok)
		}
	}
}

func TestDenyCode(t *testing.T) {
	for body, want := range map[string]string{
		`{"code":"INVALID_API_KEY","message":"x"}`:       "INVALID_API_KEY",
		`{"error":{"code":"RATE_LIMITED","message":""}}`: "RATE_LIMITED",
		`{"message":"only a message"}`:                   "HTTP_403",
		`not json`:                                       "HTTP_403",
	} {
		if got := denyCode(body, 403); got != want {
			t.Errorf("%s: %s, want %s", body, got, want)
		}
	}
}

func TestPercentile(t *testing.T) {
	l := make([]time.Duration, 1000)
	for i := range l {
		l[i] = time.Duration(i+1) * time.Millisecond
	}
	for q, want := range map[float64]time.Duration{50: 500 * time.Millisecond, 99: 990 * time.Millisecond, 99.9: 999 * time.Millisecond, 100: time.Second} {
		if got := percentile(l, q); got != want {
			t.Errorf("p%v = %v, want %v", q, got, want)
		}
	}
}

// TestRunAgainstNoop seeds a real SQLite store with the realistic workload
// and loads the no-op server with it: every Check is answered and counted,
// and a seed replays the same choices.
func TestRunAgainstNoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, out := runAgainstNoop(ctx, t, "--keys", "50", "--sites", "5", "--duration", "2s", "--concurrency", "2")
	if !strings.Contains(out, "outcomes: ALLOW 100.00%") || !strings.Contains(out, "class known") {
		t.Fatalf("output:\n%s", out)
	}

	tr, err := seed(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]string, 200)
	for i := range first {
		r := tr.next()
		first[i] = r.method + r.path[:min(len(r.path), 12)] + r.class
	}
	tr.reset()
	classes := map[string]int{}
	for i := range first {
		r := tr.next()
		if got := r.method + r.path[:min(len(r.path), 12)] + r.class; got != first[i] {
			t.Fatalf("request %d after reset: %s, want %s", i, got, first[i])
		}
		classes[r.class]++
	}
	if classes["known"] == 0 || classes["public"] == 0 {
		t.Fatalf("realistic traffic classes: %v", classes)
	}

	// A known key's first request in the run is marked, in whatever form
	// it sends the key, and no other request is; the floor's replay
	// (reset) marks the same ones. Over several seeds, since unknown and
	// revoked keys stand in for a known key's request now and then.
	for _, seedValue := range []uint64{1, 3, 6, 7, 8, 9, 12, 18, 19} {
		tr.cfg.Seed = seedValue
		var marks [2][]bool
		for pass := range marks {
			tr.reset()
			sent := map[string]bool{}
			for range 2000 {
				r := tr.next()
				key, known := sentKey(tr, r)
				if r.first != (known && !sent[key]) {
					t.Fatalf("seed %d: a %s request marked first=%v, its key sent before: %v", seedValue, r.class, r.first, sent[key])
				}
				sent[key] = sent[key] || known
				marks[pass] = append(marks[pass], r.first)
			}
		}
		if !slices.Equal(marks[0], marks[1]) {
			t.Fatalf("seed %d: the replay marked other requests first", seedValue)
		}
	}
}

// Startup prints the CPU a process logs at SERVING (keygate serve's
// cpu_to_serving, text or JSON logs) and passes every log line through.
func TestScanServingCPU(t *testing.T) {
	for log, want := range map[string]time.Duration{
		"time=x level=INFO msg=\"keygate serving\"\ntime=x level=INFO msg=\"first SERVING\" cpu_to_serving=12.34ms\n": 12340 * time.Microsecond,
		`{"msg":"first SERVING","cpu_to_serving":9876000}` + "\n":                                                     9876 * time.Microsecond,
		"no such line\n": 0,
	} {
		var out bytes.Buffer
		found := make(chan time.Duration, 1)
		scanServingCPU(strings.NewReader(log), &out, found)
		var got time.Duration
		select {
		case got = <-found:
		default:
		}
		if got != want || out.String() != log {
			t.Errorf("%q: found %v, passed %q; want %v", log, got, out.String(), want)
		}
	}
}

// Startup refuses to time a command while something already listens on
// the address it polls: that server would be timed instead.
func TestStartupRefusesABusyAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	started := filepath.Join(t.TempDir(), "started")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err = Startup(ctx, l.Addr().String(), []string{"touch", started}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "already accepts connections") {
		t.Fatalf("Startup against a busy address: %v", err)
	}
	if _, err := os.Stat(started); err == nil {
		t.Fatal("the command was started")
	}
}

// TestHelperNoop is not a test: run with BENCH_HELPER_NOOP=addr, it is a
// no-op server for the Startup tests to start.
func TestHelperNoop(t *testing.T) {
	addr := os.Getenv("BENCH_HELPER_NOOP")
	if addr == "" {
		t.Skip("a helper process for the Startup tests")
	}
	RunNoop(context.Background(), addr, freeAddr()) //nolint:errcheck // killed by the test
}

// Startup stops what its command started too: a wrapper's background
// child dies with it, and Startup does not wait for it to end.
func TestStartupStopsDescendants(t *testing.T) {
	dir := t.TempDir()
	addr, pidFile, done := freeAddr(), filepath.Join(dir, "pid"), filepath.Join(dir, "done")
	script := fmt.Sprintf(`(sleep 60 && touch %s) & echo $! > %s; exec %s -test.run '^TestHelperNoop$'`, done, pidFile, os.Args[0])
	t.Setenv("BENCH_HELPER_NOOP", addr)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := Startup(ctx, addr, []string{"sh", "-c", script}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "SERVING after") {
		t.Fatalf("output: %q", out.String())
	}
	if _, err := os.Stat(done); err == nil {
		t.Fatal("Startup returned only after the command's background child ended")
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	// Killed, it is a zombie until whoever adopted it reaps it.
	for alive(pid) {
		if ctx.Err() != nil {
			t.Fatalf("the command's background child %d outlived Startup", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A command that exits before SERVING ends the wait at once, with an
// error that says so, even while a child of it holds its stderr; one that
// sends its stderr elsewhere is still timed.
func TestStartupNoticesExit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := filepath.Join(t.TempDir(), "done")
	script := fmt.Sprintf("(sleep 20 && touch %s) & exit 3", done)
	err := Startup(ctx, freeAddr(), []string{"sh", "-c", script}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("Startup of a command that exits: %v", err)
	}
	if _, err := os.Stat(done); err == nil {
		t.Fatal("the exit was noticed only after the command's child ended")
	}

	addr := freeAddr()
	t.Setenv("BENCH_HELPER_NOOP", addr)
	script = fmt.Sprintf("exec %s -test.run '^TestHelperNoop$' 2>%s", os.Args[0], filepath.Join(t.TempDir(), "log"))
	var out bytes.Buffer
	if err := Startup(ctx, addr, []string{"sh", "-c", script}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "SERVING after") {
		t.Fatalf("a server logging to a file: %v, %q", err, out.String())
	}
}

// alive reports whether process pid runs (exists and is not a zombie).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z") && !strings.HasPrefix(rest, "X")
}

// sentKey is the seeded key r sends (by its secret, whatever the form or
// an access token of it), and whether r is a known key's request.
func sentKey(tr *traffic, r request) (string, bool) {
	if r.class != "known" {
		return "", false
	}
	cred := r.headers["x-api-key"]
	if a := r.headers["authorization"]; a != "" {
		scheme, value, _ := strings.Cut(a, " ")
		cred = value
		if scheme == "Basic" {
			raw, _ := base64.StdEncoding.DecodeString(value)
			cred = strings.TrimSuffix(string(raw), ":")
		}
	}
	for _, k := range tr.keys {
		if cred == k.secret || cred == k.token && k.token != "" {
			return k.secret, true
		}
	}
	return "", false
}

// runAgainstNoop starts the no-op server, runs the tool against it with a
// fresh SQLite store and the given flags, and returns its config and output.
func runAgainstNoop(ctx context.Context, t *testing.T, flags ...string) (Config, string) {
	t.Helper()
	grpcAddr, httpAddr := freeAddr(), freeAddr()
	go RunNoop(ctx, grpcAddr, httpAddr) //nolint:errcheck // ends with ctx
	if _, err := waitServing(ctx, grpcAddr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseFlags("bench", append([]string{"--target", grpcAddr, "--metrics", "http://" + httpAddr + "/metrics",
		"--store", "sqlite:" + filepath.Join(t.TempDir(), "kg.db"), "--token-url", "", "--warmup", "100ms"}, flags...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Run(ctx, cfg, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	return cfg, out.String()
}
