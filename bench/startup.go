package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Startup starts command, waits until the gRPC health service at addr
// answers SERVING, prints how long that took and the CPU time the process
// had used by then (processCPU), and stops the command.
//
// The tool reads that CPU a health check's round trip after the process
// reported SERVING, so it includes whatever the process does right after
// it (keygate serve completes its policy's analyses then). A process that
// logs its own figure at SERVING (keygate serve's cpu_to_serving) has it
// printed too, as "in the process": that is the figure keygate's start-up
// target is judged on; the floor does nothing after SERVING, so the tool's
// figure is its own.
func Startup(ctx context.Context, addr string, command []string, stdout, stderr io.Writer) error {
	if len(command) == 0 {
		return errors.New("bench: startup: no command")
	}
	// A server left running on addr (an earlier run's, orphaned) would
	// answer SERVING at once and be timed instead of command.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("bench: startup: %s already accepts connections: stop what listens there first", addr)
	}
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Stdout = io.Discard
	// Its own process group, so that stopping it stops what it started
	// (a wrapper's server would outlive the tool and hold addr); WaitDelay
	// bounds the wait for a descendant still holding its stderr.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	logs, err := cmd.StderrPipe()
	if err != nil {
		return fmt.Errorf("bench: startup: %w", err)
	}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: startup: %w", err)
	}
	reported := make(chan time.Duration, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		scanServingCPU(logs, stderr, reported)
	}()
	defer func() {
		cmd.Cancel() //nolint:errcheck // it is ours and must go
		select {
		case <-copied: // Wait closes the pipe only once its reader is done
		case <-time.After(cmd.WaitDelay):
		}
		cmd.Wait() //nolint:errcheck // killed
	}()
	// A command that exits (a bad flag, a port in use) ends the wait then,
	// not after the limit.
	waitCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		waitExit(cmd.Process.Pid)
		stop()
	}()
	if _, err := waitServing(waitCtx, addr, 5*time.Minute); err != nil {
		if ctx.Err() == nil && waitCtx.Err() != nil {
			return fmt.Errorf("bench: startup: %v exited before %s answered SERVING", command, addr)
		}
		return err
	}
	took := time.Since(began)
	cpu := "CPU unknown"
	if d, err := processCPU(cmd.Process.Pid); err == nil {
		cpu = "CPU " + d.Round(time.Millisecond).String()
	}
	// The process logs its figure as it reports SERVING: by now the line
	// is written, or on its way.
	select {
	case d := <-reported:
		cpu += fmt.Sprintf("; in the process at SERVING %s", d.Round(100*time.Microsecond))
	case <-time.After(time.Second):
	}
	fmt.Fprintf(stdout, "SERVING after %s (%s): %v\n", took.Round(time.Millisecond), cpu, command)
	return nil
}

// waitExit returns when process pid (a child) has exited, leaving it to
// be reaped by exec.Cmd.Wait (WNOWAIT).
func waitExit(pid int) {
	var info unix.Siginfo
	for unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil) == unix.EINTR {
	}
}

// servingCPU finds keygate serve's cpu_to_serving in a text (…=12.3ms) or
// JSON ("…":12300000, nanoseconds) log line. Compiled when first needed:
// keygate links this package for `keygate bench`, and at package
// initialisation every keygate start would pay for it.
var servingCPU = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`cpu_to_serving"?[=:]([0-9.]+[a-zµ]*)`)
})

// scanServingCPU copies the command's log to w and sends the first
// cpu_to_serving it finds on found.
func scanServingCPU(r io.Reader, w io.Writer, found chan<- time.Duration) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	sent := false
	for sc.Scan() {
		line := sc.Bytes()
		fmt.Fprintf(w, "%s\n", line)
		if sent {
			continue
		}
		if m := servingCPU().FindSubmatch(line); m != nil {
			if d, ok := parseServingCPU(string(m[1])); ok {
				found <- d
				sent = true
			}
		}
	}
	io.Copy(w, r) //nolint:errcheck // a line past the scanner's limit: pass the rest through
}

func parseServingCPU(s string) (time.Duration, bool) {
	if ns, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(ns), true
	}
	d, err := time.ParseDuration(s)
	return d, err == nil
}
