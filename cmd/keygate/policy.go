package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/policies"
)

// defaultCoverageThreshold is the coverage `keygate policy test` demands
// unless told otherwise (README, CI): every policy line keygate ships is
// exercised by a test, give or take a few lines.
const defaultCoverageThreshold = 90

func (e *environment) policyCommand() *cobra.Command {
	var threshold float64
	var verbose bool
	c, fs := e.newLeaf("test [DIR]", "run the Rego tests of a policy directory (default: the built-in policy)", maxArgs(1, "[DIR]"),
		func(ctx context.Context, dirs []string) error {
			if threshold < 0 || threshold > 100 {
				return fmt.Errorf("%w: keygate policy test: --threshold must be between 0 and 100", errUsage)
			}
			dir := ""
			if len(dirs) == 1 {
				dir = dirs[0]
				if _, err := os.Stat(dir); err != nil {
					return fmt.Errorf("policy test: no policy directory at %s (%v); pass a directory holding .rego files, or none for the built-in policy", dir, errors.Unwrap(err))
				}
			}
			return e.policyTest(ctx, dir, threshold, verbose)
		})
	fs.Float64Var(&threshold, "threshold", defaultCoverageThreshold, "fail when the policy's line coverage (%) is below this")
	fs.BoolVarP(&verbose, "verbose", "v", false, "print every test, not only failures, and the coverage of each file; a failed test's whole trace")
	return e.newGroup("policy", "work with policies", c, e.policyInitCommand(), e.policyReplayCommand())
}

func (e *environment) policyInitCommand() *cobra.Command {
	c, _ := e.newLeaf("init DIR", "write a layer on the built-in policy to edit: data.yaml (every setting commented) and a test file", exactArgs(1, "DIR"),
		func(_ context.Context, dirs []string) error { return e.policyInit(dirs[0]) })
	return c
}

// policyTest runs `keygate policy test [DIR]`.
func (e *environment) policyTest(ctx context.Context, dir string, threshold float64, verbose bool) error {
	b, err := loadBundle(dir)
	if err != nil {
		return err
	}
	if _, err := policies.Compile(ctx, b); err != nil {
		return err
	}
	report, err := policies.RunTests(ctx, b, true)
	if err != nil {
		return err
	}
	return e.printTestReport(b, report, threshold, verbose)
}

// indent prefixes every line of s with pre.
func indent(s, pre string) string {
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(pre + l)
		}
	}
	if !strings.HasSuffix(s, "\n") {
		b.WriteString("\n")
	}
	return b.String()
}

// printTestReport prints one line per test (failures always), the coverage,
// and returns an error when a test failed or coverage is short.
func (e *environment) printTestReport(b *policies.Bundle, r *policies.TestReport, threshold float64, verbose bool) error {
	for _, t := range r.Results {
		if t.Pass && !verbose {
			continue
		}
		outcome := "PASS"
		if !t.Pass {
			outcome = "FAIL"
		}
		fmt.Fprintf(e.stdout, "%s %s (%s)", outcome, t.Name, t.Location)
		if t.Err != "" {
			fmt.Fprintf(e.stdout, ": %s", strings.ReplaceAll(t.Err, "\n", " "))
		}
		fmt.Fprintln(e.stdout)
		// Why it failed: the failing expression with its operands' values,
		// and with -v the whole trace.
		if t.Failure != "" {
			fmt.Fprint(e.stdout, indent(t.Failure, "    "))
		}
		if verbose && t.Trace != "" {
			fmt.Fprintln(e.stdout, "  trace:")
			fmt.Fprint(e.stdout, indent(t.Trace, "    "))
		}
	}
	source := b.Source
	if b.Extends != "" {
		source += " (layered on " + b.Extends + ")"
	}
	failed := r.Failed()
	coverage := fmt.Sprintf("coverage %.1f%% of %d policy lines (threshold %.0f%%)", r.Coverage, r.Covered+r.NotCovered, threshold)
	if r.Covered+r.NotCovered == 0 {
		coverage = "no Rego of its own to cover (the built-in tests cover the built-in Rego)"
	}
	fmt.Fprintf(e.stdout, "%s: %s\n", source, coverage)
	if verbose || r.Coverage < threshold {
		files := make([]string, 0, len(r.Files))
		for f := range r.Files {
			files = append(files, f)
		}
		sort.Strings(files)
		for _, f := range files {
			fmt.Fprintf(e.stdout, "  %-24s %5.1f%%\n", f, r.Files[f])
		}
	}
	fmt.Fprintf(e.stdout, "%d passed, %d failed\n", len(r.Results)-failed, failed)
	switch {
	case len(r.Results) == 0:
		return fmt.Errorf("policy test %s: no Rego tests (*_test.rego) found", b.Source)
	case failed > 0:
		return fmt.Errorf("policy test %s: %d of %d tests failed", b.Source, failed, len(r.Results))
	case r.Coverage < threshold:
		return fmt.Errorf("policy test %s: coverage %.1f%% is below the threshold of %.0f%%", b.Source, r.Coverage, threshold)
	}
	return nil
}

// policyInit runs `keygate policy init DIR`: a layer skeleton to edit.
func (e *environment) policyInit(dir string) error {
	files, err := policies.InitLayer(dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintf(e.stdout, "wrote %s\n", f)
	}
	fmt.Fprintf(e.stdout, "next: edit %s, then keygate policy test %s and keygate serve --policies %s\n", files[0], dir, dir)
	return nil
}
