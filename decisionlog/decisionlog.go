// Package decisionlog writes keygate's decision log: one JSON line per final
// decision, from every transport (gRPC Check, each forward-auth endpoint,
// the token exchange), with the decision id the client or upstream saw.
//
// Logging never slows a decision down: Observe hands the decision to a
// bounded buffer and returns; a full buffer drops the line and counts it
// (keygate_decision_log_dropped_total). One goroutine encodes and writes.
// Reopen (SIGHUP in `keygate serve`) reopens the file, for logrotate.
//
// Nothing secret is written: the policy input never holds credential
// headers, and any other string that looks like a keygate key or token
// (say, one a client put in a query string) is replaced by "[redacted]".
package decisionlog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/extauthz"
)

// Config says where and what to log.
type Config struct {
	// Path is a file (appended to, created 0600) or "-" for stdout.
	Path string
	// SampleAllows is the share of allows logged, 0 to 1; denies are
	// always logged.
	SampleAllows float64
	// Buffer is how many decisions may wait for the writer (default 4096).
	Buffer int
	// Secrets are markers of secret strings (e.g. "kg_live_", "kg_at_"): a
	// logged string containing one is redacted.
	Secrets []string
	Log     *slog.Logger
	// Stdout is where "-" writes (default os.Stdout).
	Stdout io.Writer
}

// Logger is the decision log. It implements extauthz.Observer.
type Logger struct {
	cfg     Config
	entries chan *extauthz.Outcome
	reopen  chan chan error
	done    chan struct{}
	once    sync.Once

	out                     io.WriteCloser
	w                       *bufio.Writer
	lines, dropped, sampled prometheus.Counter
}

// New opens the log and starts its writer; Close stops it.
func New(cfg Config, reg prometheus.Registerer) (*Logger, error) {
	if cfg.SampleAllows < 0 || cfg.SampleAllows > 1 {
		return nil, fmt.Errorf("decisionlog: sample must be between 0 and 1, not %v", cfg.SampleAllows)
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 4096
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	l := &Logger{cfg: cfg, entries: make(chan *extauthz.Outcome, cfg.Buffer), reopen: make(chan chan error), done: make(chan struct{}),
		lines: prometheus.NewCounter(prometheus.CounterOpts{Name: "keygate_decision_log_lines_total", Help: "Decisions written to the decision log."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "keygate_decision_log_dropped_total",
			Help: "Decisions not logged because the decision log's buffer was full (the writer fell behind)."}),
		sampled: prometheus.NewCounter(prometheus.CounterOpts{Name: "keygate_decision_log_sampled_out_total",
			Help: "Allows not logged by --decision-log-sample."}),
	}
	if err := l.open(); err != nil {
		return nil, err
	}
	if reg != nil {
		reg.MustRegister(l.lines, l.dropped, l.sampled)
	}
	go l.run()
	return l, nil
}

func (l *Logger) open() error {
	if l.cfg.Path == "-" {
		l.out = nopCloser{l.cfg.Stdout}
	} else {
		f, err := os.OpenFile(l.cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("decisionlog: %w", err)
		}
		l.out = f
	}
	l.w = bufio.NewWriterSize(l.out, 64<<10)
	return nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Observe queues a decision. It never blocks: allows are sampled, and a
// full buffer drops the line (counted).
func (l *Logger) Observe(o extauthz.Outcome) {
	if o.Result.Decision.Allow && l.cfg.SampleAllows < 1 && rand.Float64() >= l.cfg.SampleAllows {
		l.sampled.Inc()
		return
	}
	kept := new(extauthz.Outcome)
	*kept = o
	select {
	case l.entries <- kept:
	default:
		l.dropped.Inc()
	}
}

// Reopen closes and reopens the file (after logrotate moved it).
func (l *Logger) Reopen() error {
	errc := make(chan error, 1)
	select {
	case l.reopen <- errc:
		return <-errc
	case <-l.done:
		return fmt.Errorf("decisionlog: closed")
	}
}

// Close writes what is queued and closes the file.
func (l *Logger) Close() error {
	l.once.Do(func() { close(l.entries) })
	<-l.done
	return l.out.Close()
}

func (l *Logger) run() {
	defer close(l.done)
	for {
		select {
		case o, ok := <-l.entries:
			if !ok {
				l.flush()
				return
			}
			l.write(o)
			if len(l.entries) == 0 {
				l.flush()
			}
		case errc := <-l.reopen:
			// What was queued before the rotation belongs to the old file.
			for range len(l.entries) {
				if o, ok := <-l.entries; ok {
					l.write(o)
				}
			}
			l.flush()
			err := l.out.Close()
			if oerr := l.open(); oerr != nil {
				// Keep logging somewhere rather than nowhere: stderr of the
				// process is what an operator looks at next.
				l.out, l.w = nopCloser{os.Stderr}, bufio.NewWriter(os.Stderr)
				err = oerr
			}
			errc <- err
		}
	}
}

func (l *Logger) flush() {
	if err := l.w.Flush(); err != nil && l.cfg.Log != nil {
		l.cfg.Log.Warn("decision log: write failed", "err", err)
	}
}

func (l *Logger) write(o *extauthz.Outcome) {
	line, err := json.Marshal(l.entry(o))
	if err != nil {
		if l.cfg.Log != nil {
			l.cfg.Log.Warn("decision log: encoding failed", "err", err, "decision_id", o.ID)
		}
		return
	}
	l.w.Write(line)     //nolint:errcheck // bufio keeps the error for Flush
	l.w.WriteByte('\n') //nolint:errcheck
	l.lines.Inc()
}

// Entry is one line of the decision log.
type Entry struct {
	DecisionID     string    `json:"decision_id"`
	Time           time.Time `json:"time"`
	Transport      string    `json:"transport"`
	Method         string    `json:"method,omitempty"`
	Host           string    `json:"host,omitempty"`
	Path           string    `json:"path,omitempty"`
	Allow          bool      `json:"allow"`
	Status         int       `json:"status"`
	Code           string    `json:"code"`
	Rule           string    `json:"rule,omitempty"`
	KeyID          string    `json:"key_id,omitempty"`
	Site           string    `json:"site,omitempty"`
	Account        string    `json:"account,omitempty"`
	Mode           string    `json:"mode,omitempty"`
	CredentialKind string    `json:"credential_kind,omitempty"`
	Client         string    `json:"client,omitempty"`
	DurationUS     int64     `json:"duration_us"`
	Memo           string    `json:"memo,omitempty"`
	TraceID        string    `json:"trace_id,omitempty"`
	Input          *input    `json:"input,omitempty"`
	// Shadow is the shadow policy's answer when it differs from this one.
	Shadow *extauthz.ShadowAnswer `json:"shadow,omitempty"`
}

func (l *Logger) entry(o *extauthz.Outcome) Entry {
	res := &o.Result
	d := res.Decision
	e := Entry{DecisionID: o.ID, Time: o.Start.UTC(), Transport: o.Transport, Allow: d.Allow, Status: d.Status, Code: d.Code,
		Rule: d.Rule, KeyID: res.KeyID, Site: res.Site, Mode: res.Mode, Client: o.Client,
		DurationUS: o.Duration.Microseconds(), Memo: res.Memo, TraceID: o.TraceID}
	if d.Allow {
		e.Status, e.Code = 200, "OK"
	}
	if o.Shadow != nil {
		sh := *o.Shadow
		sh.Error = l.redact(sh.Error)
		e.Shadow = &sh
	}
	if in := res.Input; in != nil {
		e.Method, e.Host, e.Path = in.Request.Method, in.Request.Host, in.Request.Path
		e.CredentialKind = in.Credential.Kind
		if in.Account != nil {
			e.Account = in.Account.ID
		} else if in.Public != nil && in.Public.Account != nil {
			e.Account = in.Public.Account.ID
		}
		if e.Site == "" && in.Public != nil && in.Public.Site != nil {
			e.Site = in.Public.Site.ID
		}
		e.Input = logInput(in, l.redact)
	}
	e.Method, e.Host, e.Path = l.redact(e.Method), l.redact(e.Host), l.redact(e.Path)
	return e
}

// redact hides a string that holds a secret's marker, also when the
// client percent-encoded it (kg%5Flive%5F…, up to twice).
func (l *Logger) redact(s string) string {
	v := s
	for range 3 {
		for _, m := range l.cfg.Secrets {
			if strings.Contains(v, m) {
				return "[redacted]"
			}
		}
		d, err := url.PathUnescape(v)
		if err != nil || d == v {
			break
		}
		v = d
	}
	return s
}
