package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/keygate/keygate/keystore"
)

// flagSet is a flag.FlagSet whose flags fall back to KEYGATE_<FLAG>
// environment variables when not given on the command line.
type flagSet struct {
	*flag.FlagSet
	getenv func(string) string
}

func (e environment) flags(name string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return &flagSet{FlagSet: fs, getenv: e.getenv}
}

// EnvName is the environment variable for a flag: --grpc-addr → KEYGATE_GRPC_ADDR.
func EnvName(flagName string) string {
	return "KEYGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse reads flags and positional arguments in any order, then fills unset
// flags from the environment. It returns the positional arguments.
func (fs *flagSet) parse(args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			// The flag package already printed the problem and the flags.
			return nil, errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v := fs.getenv(EnvName(f.Name)); v != "" {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, e)
			}
		}
	})
	return positional, err
}

// storeFlags are shared by every command that opens the store.
type storeFlags struct {
	store     string
	keyPrefix string
}

func (s *storeFlags) register(fs *flagSet) {
	fs.StringVar(&s.store, "store", "sqlite:keygate.db", "store: sqlite:PATH or postgres://…")
	fs.StringVar(&s.keyPrefix, "key-prefix", "kg", "prefix of generated keys (<prefix>_<live|test>_…)")
}

// keyTools builds the key format and digester from flags and KEYGATE_PEPPER
// (comma-separated, newest first; never a flag, so it stays out of ps).
func (e environment) keyTools(s storeFlags) (keystore.Format, *keystore.Digester, error) {
	format, err := keystore.NewFormat(s.keyPrefix)
	if err != nil {
		return keystore.Format{}, nil, err
	}
	var peppers [][]byte
	if p := e.getenv("KEYGATE_PEPPER"); p != "" {
		for _, v := range strings.Split(p, ",") {
			peppers = append(peppers, []byte(v))
		}
	}
	d, err := keystore.NewDigester(peppers...)
	if err != nil {
		return keystore.Format{}, nil, fmt.Errorf("KEYGATE_PEPPER: %w", err)
	}
	return format, d, nil
}

func (e environment) openStore(ctx context.Context, s storeFlags) (*keystore.Store, error) {
	format, digester, err := e.keyTools(s)
	if err != nil {
		return nil, err
	}
	return keystore.Open(ctx, s.store, keystore.Options{Format: format, Digester: digester})
}

// closer closes c and keeps the first error.
func closeInto(err *error, c io.Closer) {
	if cerr := c.Close(); cerr != nil && *err == nil {
		*err = cerr
	}
}
