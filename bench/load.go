package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// sender sends one request and names its outcome: ALLOW, the decision's
// code (from the deny body), HTTP_<status>, or ERROR.
type sender func(ctx context.Context, r request) string

func grpcSender(target string) (sender, func(), error) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("bench: dial %s: %w", target, err)
	}
	client := authv3.NewAuthorizationClient(conn)
	return func(ctx context.Context, r request) string {
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: r.method, Path: r.path, Host: r.host, Headers: r.headers, Scheme: "https", Protocol: "HTTP/1.1",
			}},
		}})
		if err != nil {
			return "ERROR"
		}
		if resp.GetStatus().GetCode() == 0 {
			return "ALLOW"
		}
		d := resp.GetDeniedResponse()
		return denyCode(d.GetBody(), int(d.GetStatus().GetCode()))
	}, func() { conn.Close() }, nil
}

func httpSender(base string) (sender, func(), error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}, Timeout: 10 * time.Second}
	return func(ctx context.Context, r request) string {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/forward-auth", nil)
		if err != nil {
			return "ERROR"
		}
		for k, v := range r.headers {
			req.Header.Set(k, v)
		}
		req.Header.Set("x-forwarded-method", r.method)
		req.Header.Set("x-forwarded-uri", r.path)
		req.Header.Set("x-forwarded-host", r.host)
		resp, err := client.Do(req)
		if err != nil {
			return "ERROR"
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if resp.StatusCode == http.StatusOK {
			return "ALLOW"
		}
		return denyCode(string(body), resp.StatusCode)
	}, client.CloseIdleConnections, nil
}

// denyCode reads the code from a deny body ({"code"}, or {"error":{"code"}}).
func denyCode(body string, status int) string {
	var b struct {
		Code  string `json:"code"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &b) == nil {
		if b.Code != "" {
			return b.Code
		}
		if b.Error.Code != "" {
			return b.Error.Code
		}
	}
	return "HTTP_" + strconv.Itoa(status)
}

// result is one measured run.
type result struct {
	name    string
	elapsed time.Duration
	latency map[string][]time.Duration // by class; "" holds all
	// late is, in an open loop, how far behind schedule each request was
	// sent: the tool's own share of the latencies (see pacer).
	late     []time.Duration
	outcomes map[string]int
	// cpuPerReq and rss come from the server's /metrics (0 when unknown).
	cpuPerReq time.Duration
	rss       float64
}

type recorder struct {
	mu       sync.Mutex
	on       bool
	latency  map[string][]time.Duration
	late     []time.Duration
	outcomes map[string]int
}

func (rec *recorder) record(r request, outcome string, d time.Duration) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !rec.on {
		return
	}
	rec.latency[""] = append(rec.latency[""], d)
	rec.latency[r.class] = append(rec.latency[r.class], d)
	if r.first {
		rec.latency["first"] = append(rec.latency["first"], d)
	}
	rec.outcomes[outcome]++
}

// sent records how far behind its schedule an open loop's request left.
func (rec *recorder) sent(d time.Duration) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.on {
		rec.late = append(rec.late, d)
	}
}

func (rec *recorder) set(on bool) {
	rec.mu.Lock()
	rec.on = on
	rec.mu.Unlock()
}

// load runs warm-up then the measured duration against send.
func load(ctx context.Context, cfg Config, name string, t *traffic, send sender) (result, error) {
	rec := &recorder{latency: map[string][]time.Duration{}, outcomes: map[string]int{}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var before, after metrics
	var measureStart time.Time
	phase := func() {
		// Warm-up ends: sample the server and start recording.
		before = scrape(cfg.MetricsURL)
		measureStart = time.Now()
		rec.set(true)
	}
	end := time.Now().Add(cfg.Warmup + cfg.Duration)
	phased := make(chan struct{})
	warm := time.AfterFunc(cfg.Warmup, func() { defer close(phased); phase() })
	var wg sync.WaitGroup
	if cfg.Rate > 0 {
		openLoop(ctx, cfg.Rate, end, t, &wg, func(r request, due time.Time) {
			rec.sent(time.Since(due))
			out := send(ctx, r)
			rec.record(r, out, time.Since(due))
		})
	} else {
		var mu sync.Mutex
		for range cfg.Concurrency {
			wg.Go(func() {
				for time.Now().Before(end) && ctx.Err() == nil {
					mu.Lock()
					r := t.next()
					mu.Unlock()
					began := time.Now()
					out := send(ctx, r)
					rec.record(r, out, time.Since(began))
				}
			})
		}
	}
	wg.Wait()
	if !warm.Stop() {
		<-phased // it ran, or is running: its figures are read below
	}
	rec.set(false)
	after = scrape(cfg.MetricsURL)
	res := result{name: name, elapsed: time.Since(measureStart), latency: rec.latency, late: rec.late, outcomes: rec.outcomes}
	if n := len(rec.latency[""]); n > 0 && before.ok && after.ok {
		res.cpuPerReq = time.Duration((after.cpu - before.cpu) / float64(n) * 1e9)
		res.rss = after.rss
	}
	return res, nil
}

// openLoop sends request i at start + i/rate, whatever came before, each
// on a goroutine of its own (do), until end or ctx ends.
func openLoop(ctx context.Context, rate float64, end time.Time, t *traffic, wg *sync.WaitGroup, do func(request, time.Time)) {
	const maxInFlight = 8192
	sem := make(chan struct{}, maxInFlight)
	pace := newPacer()
	defer pace.stop()
	start := time.Now()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if due.After(end) || ctx.Err() != nil {
			return
		}
		pace.until(due)
		r := t.next()
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			do(r, due)
		})
	}
}

type metrics struct {
	ok       bool
	cpu, rss float64
}

// scrape reads process_cpu_seconds_total and process_resident_memory_bytes
// from a Prometheus text exposition.
func scrape(url string) metrics {
	if url == "" {
		return metrics{}
	}
	resp, err := http.Get(url)
	if err != nil {
		return metrics{}
	}
	defer resp.Body.Close()
	var m metrics
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_cpu_seconds_total":
			m.cpu, m.ok = v, true
		case "process_resident_memory_bytes":
			m.rss = v
		}
	}
	return m
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func (r result) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(len(r.latency[""])) / r.elapsed.Seconds()
}

func (r result) p(class string, q float64) time.Duration {
	l := r.latency[class]
	if !slices.IsSorted(l) {
		slices.Sort(l)
	}
	return percentile(l, q)
}

// print writes one result line per target and the outcomes.
func (r result) print(w io.Writer) {
	rss := "-"
	if r.rss > 0 {
		rss = fmt.Sprintf("%.1fMB", r.rss/(1<<20))
	}
	cpu := "-"
	if r.cpuPerReq > 0 {
		cpu = r.cpuPerReq.Round(100 * time.Nanosecond).String()
	}
	fmt.Fprintf(w, "%-8s %9.1f %9s %9s %9s %9s %10s %9s\n", r.name, r.rps(),
		r.p("", 50).Round(time.Microsecond), r.p("", 90).Round(time.Microsecond),
		r.p("", 99).Round(time.Microsecond), r.p("", 99.9).Round(time.Microsecond), cpu, rss)
	total := len(r.latency[""])
	codes := make([]string, 0, len(r.outcomes))
	for c := range r.outcomes {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	fmt.Fprintf(w, "  outcomes:")
	for _, c := range codes {
		fmt.Fprintf(w, " %s %.2f%%", c, 100*float64(r.outcomes[c])/float64(max(total, 1)))
	}
	fmt.Fprintln(w)
	classes := make([]string, 0, len(r.latency))
	for c := range r.latency {
		if c != "" {
			classes = append(classes, c)
		}
	}
	slices.Sort(classes)
	for _, c := range classes {
		fmt.Fprintf(w, "  class %-8s n=%-8d p50 %-9s p99 %-9s p99.9 %s\n", c, len(r.latency[c]),
			r.p(c, 50).Round(time.Microsecond), r.p(c, 99).Round(time.Microsecond), r.p(c, 99.9).Round(time.Microsecond))
	}
	if len(r.late) > 0 {
		slices.Sort(r.late)
		fmt.Fprintf(w, "  sent late         p50 %-9s p99 %-9s p99.9 %s (behind schedule, in the latencies above)\n",
			percentile(r.late, 50).Round(time.Microsecond), percentile(r.late, 99).Round(time.Microsecond),
			percentile(r.late, 99.9).Round(time.Microsecond))
	}
}

const header = "target         rps       p50       p90       p99     p99.9    cpu/req       rss\n"

// printRatios writes keygate's figures over the floor's.
func printRatios(w io.Writer, k, f result) {
	ratio := func(a, b time.Duration) string {
		if b <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", float64(a)/float64(b))
	}
	rss := "-"
	if f.rss > 0 {
		rss = fmt.Sprintf("%.2fx", k.rss/f.rss)
	}
	fmt.Fprintf(w, "%-8s %9s %9s %9s %9s %9s %10s %9s\n", "ratio", fmt.Sprintf("%.2fx", k.rps()/max(f.rps(), 1e-9)),
		ratio(k.p("", 50), f.p("", 50)), ratio(k.p("", 90), f.p("", 90)), ratio(k.p("", 99), f.p("", 99)),
		ratio(k.p("", 99.9), f.p("", 99.9)), ratio(k.cpuPerReq, f.cpuPerReq), rss)
}
