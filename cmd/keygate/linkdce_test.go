//go:build grpcnotrace && linux

package main

import (
	"debug/elf"
	"debug/gosym"
	"os"
	"testing"
)

// TestNoTextTemplateExecution: nothing keygate links may execute a
// text/template (cobra's SetVersionTemplate, SetUsageTemplate and
// SetHelpTemplate do; so does html/template, which gRPC's x/net/trace
// brought in before the grpcnotrace tag). A reachable template Execute
// calls methods by name, and then the linker keeps every exported method
// of every type: a fifth more code for every start to fault in and for
// the runtime to walk (cli.go, rootCommand). The test binary links what
// run does, so its symbols tell.
func TestNoTextTemplateExecution(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	// go test links without a symbol table; the runtime's own function
	// table (.gopclntab) is always there.
	pcln, text := f.Section(".gopclntab"), f.Section(".text")
	if pcln == nil || text == nil {
		t.Skip("no .gopclntab or .text section")
	}
	data, err := pcln.Data()
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		t.Fatal(err)
	}
	if tab.LookupFunc("runtime.main") == nil {
		t.Fatal("the function table lacks runtime.main: the lookup is broken")
	}
	if tab.LookupFunc("text/template.(*state).evalField") != nil {
		t.Fatal("text/template's Execute is linked: the linker keeps every exported method (see rootCommand)")
	}
}
