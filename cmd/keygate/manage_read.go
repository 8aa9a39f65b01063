package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/keystore"
)

// showCommand is `<noun> show ID`: read one object and print it as a table
// (or JSON with --json); a missing one is named by noun.
func showCommand[T any](e *environment, noun string, read func(*keystore.Store, context.Context, string) (T, error), table func(io.Writer, ...T)) *cobra.Command {
	return idCommand(e, "show ID", "show one "+noun, noun, read, func(w io.Writer, v T) { table(w, v) })
}

// idCommand is a command on one object named by its id (`show ID`, `revoke
// ID`): op reads or changes it, and the result is printed by text (or as
// JSON with --json); a missing one is named by noun.
func idCommand[T any](e *environment, use, short, noun string, op func(*keystore.Store, context.Context, string) (T, error), text func(io.Writer, T)) *cobra.Command {
	var sf storeFlags
	var asJSON bool
	c, fs := e.newLeaf(use, short, exactArgs(1, "ID"), func(ctx context.Context, args []string) error {
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			v, err := op(st, ctx, args[0])
			if err != nil {
				return storeError(err, noun, args[0])
			}
			return e.output(asJSON, v, func(w io.Writer) { text(w, v) })
		})
	})
	sf.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// listing is one `<plural> list` command: how to read a page, name an item
// for the next cursor, print the page as a table, and any flags of its own.
type listing[T any] struct {
	plural, short string
	read          func(ctx context.Context, st *keystore.Store, after string, limit int) ([]T, error)
	id            func(T) string
	table         func(io.Writer, ...T)
	flags         func(fs *flagSet)
}

// command is the listing as `list`: one page (--limit, --after), as a
// table or as JSON with the next page's cursor.
func (l listing[T]) command(e *environment) *cobra.Command {
	var sf storeFlags
	var lf listFlags
	c, fs := e.newLeaf("list", l.short, e.noArgs, func(ctx context.Context, _ []string) error {
		if err := lf.validate(); err != nil {
			return err
		}
		return e.withStore(ctx, sf, func(st *keystore.Store) error {
			list, err := l.read(ctx, st, lf.after, lf.limit)
			if err != nil {
				return err
			}
			return e.output(lf.asJSON, page(l.plural, list, lf.limit, l.id), func(w io.Writer) { l.table(w, list...) })
		})
	})
	sf.register(fs)
	lf.register(fs, l.plural)
	if l.flags != nil {
		l.flags(fs)
	}
	return c
}
