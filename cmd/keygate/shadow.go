package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/shadow"
)

// errChanged is `policy replay --fail-on-change` finding a difference: exit
// status 3, apart from usage (2) and other failures (1), so a CI gate can
// tell "the candidate changes answers" from "replay could not run".
var errChanged = errors.New("the candidate policy changes recorded answers")

// replayOptions are `keygate policy replay`'s inputs.
type replayOptions struct {
	policies     string // candidate policy directory ("" = built-in)
	decisionLog  string // a decision log written by serve --decision-log ("-" = stdin)
	asJSON       bool
	failOnChange bool
}

// replay runs `keygate policy replay`: the candidate decides every input a
// decision log recorded, offline, and the differences are printed.
func (e *environment) replay(ctx context.Context, o replayOptions) error {
	if o.decisionLog == "" {
		return fmt.Errorf("%w: policy replay: --decision-log FILE is required (a log written by keygate serve --decision-log)", errUsage)
	}
	policy, err := loadPolicy(ctx, o.policies)
	if err != nil {
		return err
	}
	var in io.Reader = e.stdin
	if o.decisionLog != "-" {
		f, err := os.Open(o.decisionLog)
		if err != nil {
			return fmt.Errorf("policy replay: %w", err)
		}
		defer f.Close()
		in = f
	}
	tally, stats, err := shadow.Replay(ctx, policy, in)
	if err != nil {
		return err
	}
	rows := tally.Rows(false, 0)
	if o.asJSON {
		err = e.printJSON(map[string]any{
			"replayed": tally.Total(), "changed": tally.Differing(), "stats": stats, "outcomes": rows,
		})
	} else {
		printRows(e.stdout, rows)
		fmt.Fprintf(e.stdout, "%d replayed, %d changed (%d lines read, %d without input, %d malformed)\n",
			tally.Total(), tally.Differing(), stats.Lines, stats.NoInput, stats.Malformed)
	}
	if err != nil {
		return err
	}
	if o.failOnChange && tally.Differing() > 0 {
		return fmt.Errorf("%w: %d of %d decisions", errChanged, tally.Differing(), tally.Total())
	}
	return nil
}

// shadowReport runs `keygate shadow report`: what the shadow policy of a
// running server would have changed so far (its /health summary).
func (e *environment) shadowReport(ctx context.Context, server string, asJSON bool) error {
	url := strings.TrimSuffix(server, "/") + "/health"
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%w: shadow report: --server %q: %v", errUsage, server, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("shadow report: %w (is keygate serve running with --http-addr at %s?)", err, server)
	}
	defer resp.Body.Close()
	var health struct {
		Shadow *shadow.Status `json:"shadow"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&health); err != nil {
		return fmt.Errorf("shadow report: %s: %w", url, err)
	}
	if health.Shadow == nil {
		return fmt.Errorf("shadow report: the server at %s runs no shadow policy (start it with --shadow-policies DIR)", server)
	}
	if asJSON {
		return e.printJSON(health.Shadow)
	}
	printRows(e.stdout, health.Shadow.Top)
	s := health.Shadow
	fmt.Fprintf(e.stdout, "%d evaluated (sample %g), %d differ from the live answer\n", s.Evaluated, s.Sample, s.Differing)
	return nil
}

// printRows prints outcomes as a table: live → candidate, how often, the
// candidate's deciding rules and example decision ids.
func printRows(w io.Writer, rows []shadow.Row) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LIVE\t\tCANDIDATE\tCOUNT\tCANDIDATE RULES\tEXAMPLES")
	for _, r := range rows {
		mark := "="
		if r.Live != r.Shadow {
			mark = "→"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Live, mark, r.Shadow, r.Count, ruleList(r.Rules), strings.Join(r.Examples, " "))
	}
	tw.Flush()
}

func ruleList(rules map[string]int) string {
	names := make([]string, 0, len(rules))
	for n := range rules {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return rules[names[i]] > rules[names[j]] || rules[names[i]] == rules[names[j]] && names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s×%d", n, rules[n])
	}
	return strings.Join(parts, " ")
}

func (e *environment) policyReplayCommand() *cobra.Command {
	var o replayOptions
	c, fs := e.newLeaf("replay", "decide the inputs a decision log recorded with a candidate policy, offline, and show what it would change", e.noArgs,
		func(ctx context.Context, _ []string) error { return e.replay(ctx, o) })
	fs.StringVar(&o.policies, "policies", "", "candidate policy directory (default: the built-in policies)")
	fs.StringVar(&o.decisionLog, "decision-log", "", "decision log to replay (written by keygate serve --decision-log; - for stdin)")
	fs.BoolVar(&o.asJSON, "json", false, "print the outcome as JSON")
	fs.BoolVar(&o.failOnChange, "fail-on-change", false, "exit 3 when the candidate answers any recorded decision differently (a CI gate)")
	return c
}

func (e *environment) shadowCommand() *cobra.Command {
	var server string
	var asJSON bool
	c, fs := e.newLeaf("report", "what the running server's shadow policy (serve --shadow-policies) would have changed so far", e.noArgs,
		func(ctx context.Context, _ []string) error { return e.shadowReport(ctx, server, asJSON) })
	fs.StringVar(&server, "server", "http://127.0.0.1:8080", "the running server's --http-addr, as a URL")
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return e.newGroup("shadow", "the shadow policy of a running server", c)
}
