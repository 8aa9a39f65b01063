package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The command tree is built with cobra (spf13/cobra): it gives every
// subcommand its own help listing only its own flags and arguments, -h and
// --help that exit 0 everywhere, shell completion for bash, zsh and fish,
// all from one declaration per command. (kong was the other
// candidate; cobra won because its pflag flags keep today's GNU-style
// names unchanged, completion needs no extra package, and it is what
// kubectl, docker and gh users already know.)
//
// Adding a subcommand is one constructor returning a *cobra.Command (see
// newLeaf) and one line in commands; adding a serve flag is one line in
// serveConfig.register.

// flagSet is a command's flags. Every flag also reads KEYGATE_<FLAG> from
// the environment when it is not given on the command line (applyEnv).
type flagSet = pflag.FlagSet

// EnvName is the environment variable for a flag: --grpc-addr → KEYGATE_GRPC_ADDR.
func EnvName(flagName string) string {
	return "KEYGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// rootCommand is the root of the command tree, without its commands
// (commandTree adds them).
//
// --version is keygate's own flag rather than cobra's (Command.Version):
// cobra prints its version through a text/template whenever the template
// is changed (SetVersionTemplate), and a reachable text/template Execute
// makes the Go linker keep every exported method of every type in the
// binary, since templates call methods by name. Without it the binary's
// code is ~11 MB (a fifth) smaller, which every start pays for in page
// faults and in the runtime's walk of its function and itab tables.
func (e *environment) rootCommand() *cobra.Command {
	var showVersion bool
	root := &cobra.Command{
		Use:   "keygate",
		Short: "API-key authorizer for Envoy",
		Long: `keygate — API-key authorizer for Envoy.

"keygate serve" runs the ext_authz gRPC server and the HTTP endpoints; the
management commands (accounts, sites, keys, limits, usage) work on the
store (--store) directly, and a running server sees their writes within a
second. Every flag can also be set as KEYGATE_<FLAG> (for example
KEYGATE_STORE).`,
		SilenceErrors: true, // main says the error once
		SilenceUsage:  true,
		Args: func(c *cobra.Command, args []string) error {
			if showVersion {
				return nil // as cobra's --version: arguments after it are ignored
			}
			return e.noArgs(c, args)
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if showVersion {
				_, err := fmt.Fprintln(c.OutOrStdout(), versionString())
				return err
			}
			c.SetOut(e.stderr)
			_ = c.Usage()
			return errUsage
		},
		PersistentPreRunE: func(c *cobra.Command, _ []string) error { return e.applyEnv(c.Flags()) },
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w: %s: %v (see %s --help)", errUsage, c.CommandPath(), err, c.CommandPath())
	})
	root.Flags().BoolVarP(&showVersion, "version", "v", false, "print keygate's version")
	return root
}

// commands are the top-level commands, by name so that a run builds only
// the one it names: the whole tree, flags and all, was ~0.6 M instructions
// of every start (serve's own command is a tenth of that).
var commands = []struct {
	name  string
	build func(*environment) *cobra.Command
}{
	{"serve", (*environment).serveCommand},
	{"accounts", (*environment).accountsCommand},
	{"sites", (*environment).sitesCommand},
	{"keys", (*environment).keysCommand},
	{"limits", (*environment).limitsCommand},
	{"usage", (*environment).usageCommand},
	{"check", (*environment).checkCommand},
	{"policy", (*environment).policyCommand},
	{"webhooks", (*environment).webhooksCommand},
	{"audit", (*environment).auditCommand},
	{"shadow", (*environment).shadowCommand},
	{"bench", (*environment).benchCommand},
	{"version", (*environment).versionCommand},
}

// commandTree is the root with the command args names first, or with every
// command when args name none of them (help, completion, flags of the root,
// a typo cobra suggests a command for), or alone before --version.
func (e *environment) commandTree(args []string) *cobra.Command {
	root := e.rootCommand()
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-v") && !asksHelp(args[1:]) {
		// The version, whatever follows (as cobra's own --version): no
		// command, not even cobra's completion, which it would add.
		root.CompletionOptions.DisableDefaultCmd = true
		return root
	}
	for _, c := range commands {
		if len(args) > 0 && args[0] == c.name {
			// Nor cobra's completion command, which it adds to a root
			// with subcommands (five commands and their flags, ~55k
			// instructions of every start): a shell asks for completions
			// with __complete or completion first, which builds the tree.
			root.CompletionOptions.DisableDefaultCmd = true
			root.AddCommand(c.build(e))
			return root
		}
	}
	for _, c := range commands {
		root.AddCommand(c.build(e))
	}
	return root
}

// newLeaf is a runnable command; the caller registers its flags on the
// returned flag set. run receives the positional arguments and runs with
// the command's context.
func (e *environment) newLeaf(use, short string, args cobra.PositionalArgs, run func(ctx context.Context, args []string) error) (*cobra.Command, *flagSet) {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  args,
		RunE:  func(c *cobra.Command, args []string) error { return run(c.Context(), args) },
	}
	return c, c.Flags()
}

// newGroup is a command that only holds subcommands: without one (or with
// an unknown one) it is a usage error that lists them.
func (e *environment) newGroup(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:   use,
		Short: short,
		// Any argument reaches RunE, which names it; cobra would otherwise
		// print the help and exit 0 on a typo.
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			names := make([]string, 0, len(c.Commands()))
			for _, s := range c.Commands() {
				if s.IsAvailableCommand() {
					names = append(names, s.Name())
				}
			}
			if len(args) == 0 {
				return fmt.Errorf("%w: keygate %s needs a subcommand: %s (see keygate %s --help)", errUsage, use, strings.Join(names, ", "), use)
			}
			return fmt.Errorf("%w: keygate %s: unknown subcommand %q (want %s; see keygate %s --help)", errUsage, use, args[0], strings.Join(names, ", "), use)
		},
	}
	c.AddCommand(subs...)
	return c
}

// noArgs refuses positional arguments as a usage error.
func (e *environment) noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: %s takes no arguments (got %q; see %s --help)", errUsage, c.CommandPath(), args[0], c.CommandPath())
	}
	return nil
}

// exactArgs wants n positional arguments, named in the message.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%w: usage: %s %s (see %s --help)", errUsage, c.CommandPath(), names, c.CommandPath())
		}
		return nil
	}
}

// maxArgs wants at most n positional arguments.
func maxArgs(n int, names string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) > n {
			return fmt.Errorf("%w: usage: %s %s (see %s --help)", errUsage, c.CommandPath(), names, c.CommandPath())
		}
		return nil
	}
}

// applyEnv fills the flags not given on the command line from
// KEYGATE_<FLAG>, as the contract says every flag can be set.
func (e *environment) applyEnv(fs *flagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" || f.Name == "version" {
			return
		}
		if v := e.getenv(EnvName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%w: %s=%q: %v", errUsage, EnvName(f.Name), v, err))
			}
		}
	})
	return errors.Join(errs...)
}

// stringList is a repeatable string flag (--domain a --domain b).
type stringList struct {
	values []string
	set    bool
}

func (l *stringList) String() string { return strings.Join(l.values, ",") }
func (l *stringList) Type() string   { return "strings" }

func (l *stringList) Set(v string) error {
	l.values, l.set = append(l.values, v), true
	return nil
}

// asksHelp reports whether args hold a help flag (--help, or -h alone or
// among short flags), which cobra answers before --version.
func asksHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--help" || (len(a) > 1 && a[0] == '-' && a[1] != '-' && strings.ContainsRune(a, 'h')) {
			return true
		}
	}
	return false
}

// executeRoot runs the tree on args.
func (e *environment) execute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := e.commandTree(args)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetIn(e.stdin)
	return root.ExecuteContext(ctx)
}
