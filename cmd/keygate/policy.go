package main

import (
	"context"
	"fmt"
)

// policy runs `keygate policy test [DIR]`.
func (e environment) policy(ctx context.Context, args []string) error {
	sub, args, err := subcommand(args, "policy", "test")
	if err != nil {
		return err
	}
	_ = sub
	_ = ctx
	return fmt.Errorf("policy test: not implemented yet (%d args)", len(args))
}
