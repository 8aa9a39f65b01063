package policies

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/internal/every"
)

// Reloader keeps an Engine on the newest good version of a policy
// directory. It polls the directory's policy and data files; on a change it
// loads, compiles and runs the directory's Rego tests, and only then swaps
// the engine. A change that fails any step leaves the last good policy in
// place: decisions never fail or go wrong because of a bad push.
type Reloader struct {
	Dir    string
	Engine *Engine
	Log    *slog.Logger
	// Interval between polls; 0 means 250 ms.
	Interval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// reloading serializes loads; mu guards status only, so /health and
	// metrics never wait for a compile.
	reloading sync.Mutex
	seen      [sha256.Size]byte // fingerprint of the last attempted version
	mu        sync.Mutex
	status    ReloadStatus
}

// ReloadStatus is what /health and the metrics report about reloads.
type ReloadStatus struct {
	Source string `json:"source"`
	// LoadedAt is when the policy in use was installed.
	LoadedAt time.Time `json:"loaded_at"`
	// Tests is how many Rego tests the policy in use passed.
	Tests int `json:"tests"`
	// LastAttempt, LastOK and LastError describe the newest reload attempt.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastOK      bool      `json:"last_ok"`
	LastError   string    `json:"last_error,omitempty"`
	Successes   uint64    `json:"successes"`
	Failures    uint64    `json:"failures"`
}

// maxPolicyBytes bounds what a reload reads, so a stray large file in the
// directory cannot stall the poller.
const maxPolicyBytes = 16 << 20

// Load builds the first policy (same steps as a reload: compile, then the
// directory's tests) and installs it. Start-up fails rather than serving a
// policy whose own tests fail.
func (r *Reloader) Load(ctx context.Context) (*Policy, error) {
	r.reloading.Lock()
	defer r.reloading.Unlock()
	sum, err := fingerprint(r.Dir)
	if err != nil {
		return nil, err
	}
	p, tests, err := r.build(ctx)
	if err != nil {
		return nil, err
	}
	r.seen = sum
	r.setStatus(func(s *ReloadStatus) {
		*s = ReloadStatus{Source: r.Dir, LoadedAt: r.now(), Tests: tests, LastOK: true}
	})
	if r.Engine == nil {
		r.Engine = NewEngine(p)
	} else {
		r.Engine.Swap(p)
	}
	return p, nil
}

// Run polls until ctx ends.
func (r *Reloader) Run(ctx context.Context) {
	every.Tick(ctx, every.Or(r.Interval, 250*time.Millisecond), nil, func(ctx context.Context) { _, _ = r.Reload(ctx) })
}

// Reload checks the directory once. It reports whether a new version was
// found and, if so, the error that kept it out (nil: it is in use now). A
// version that failed is not tried again until the files change.
func (r *Reloader) Reload(ctx context.Context) (bool, error) {
	r.reloading.Lock()
	defer r.reloading.Unlock()
	sum, err := fingerprint(r.Dir)
	if err == nil && sum == r.seen {
		return false, nil
	}
	if err == nil {
		r.seen = sum
		var p *Policy
		var tests int
		if p, tests, err = r.build(ctx); err == nil {
			r.Engine.Swap(p)
			now := r.now()
			r.setStatus(func(s *ReloadStatus) {
				s.LoadedAt, s.Tests = now, tests
				s.LastAttempt, s.LastOK, s.LastError = now, true, ""
				s.Successes++
			})
			r.Log.Info("policy reloaded", "source", r.Dir, "tests", tests)
			return true, nil
		}
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if last := r.Status(); !last.LastOK && last.LastError == err.Error() {
		return false, err // the same unreadable directory: reported already
	}
	r.setStatus(func(s *ReloadStatus) {
		s.LastAttempt, s.LastOK, s.LastError = r.now(), false, err.Error()
		s.Failures++
	})
	r.Log.Error("policy reload failed; keeping the last good policy", "source", r.Dir, "err", err)
	return true, err
}

// build loads, compiles and tests the directory.
func (r *Reloader) build(ctx context.Context) (*Policy, int, error) {
	b, err := LoadDir(r.Dir)
	if err != nil {
		return nil, 0, err
	}
	p, err := Compile(ctx, b)
	if err != nil {
		return nil, 0, err
	}
	report, err := RunTests(ctx, b, false)
	if err != nil {
		return nil, 0, err
	}
	if err := report.Err(); err != nil {
		return nil, 0, err
	}
	if len(report.Results) == 0 {
		r.Log.Warn("policy directory has no Rego tests; nothing checks a reload", "source", r.Dir)
	}
	// The compiled evaluator was planned while the tests ran: the policy
	// goes in with it, and the log says which evaluator decides.
	logEvaluator(r.Log, r.Dir, p, p.WaitEvaluator(ctx))
	return p, len(report.Results), nil
}

func (r *Reloader) setStatus(update func(*ReloadStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	update(&r.status)
}

// Status is a snapshot for /health and metrics.
func (r *Reloader) Status() ReloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Reloader) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// fingerprint hashes the names and contents of the files Load reads. It
// reads contents rather than trusting modification times, so an edit that
// keeps size and mtime (or a symlink swap, as Kubernetes does for
// ConfigMaps) is still seen.
func fingerprint(dir string) ([sha256.Size]byte, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if policyFile(d.Name()) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return [sha256.Size]byte{}, fmt.Errorf("policies: scan %s: %w", dir, err)
	}
	sort.Strings(files)
	h := sha256.New()
	total := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("policies: scan %s: %w", dir, err)
		}
		if total += len(b); total > maxPolicyBytes {
			return [sha256.Size]byte{}, fmt.Errorf("policies: scan %s: %w", dir, errTooLarge)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

var errTooLarge = errors.New("policy files exceed 16 MiB")

// policyFile names the files Load reads.
func policyFile(n string) bool {
	return strings.HasSuffix(n, ".rego") || n == "data.json" || n == "data.yaml" || n == "data.yml"
}
