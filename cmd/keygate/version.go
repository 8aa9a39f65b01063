package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time (-ldflags "-X main.version=v1.2.3"); without
// it the module version or VCS revision of the build is used.
var version = ""

// versionString is "keygate VERSION (REVISION, GOVERSION)".
func versionString() string {
	v, rev := version, ""
	if info, ok := debug.ReadBuildInfo(); ok {
		if v == "" && info.Main.Version != "" {
			v = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = s.Value[:12]
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if rev != "" {
		return fmt.Sprintf("keygate %s (%s, %s)", v, rev, runtime.Version())
	}
	return fmt.Sprintf("keygate %s (%s)", v, runtime.Version())
}

func (e *environment) versionCommand() *cobra.Command {
	c, _ := e.newLeaf("version", "print keygate's version", e.noArgs, func(context.Context, []string) error {
		_, err := fmt.Fprintln(e.stdout, versionString())
		return err
	})
	return c
}
