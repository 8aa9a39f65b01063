package policies

import (
	"fmt"
	"os"
	"path"

	"github.com/open-policy-agent/opa/v1/ast"
)

// BuiltIn is the source name of the embedded default policy, and the value
// of keygate.extends that layers a directory on it.
const BuiltIn = "built-in"

// LoadDir loads a policy directory. A directory is either a whole policy (it
// declares package keygate.authz itself; `opa test DIR` runs it as is) or,
// when its data sets `keygate.extends: built-in`, a layer on the built-in
// policy:
//
//   - its data is merged over the built-in data: objects merge key by key,
//     anything else (lists, strings, numbers) replaces, and null deletes;
//   - its .rego files are added to the built-in ones, and a file with the
//     same name as a built-in file (say response.rego) replaces it;
//   - the built-in tests are left out (they test the built-in data); the
//     directory's own *_test.rego files test the result.
//
// A layer keeps a deployment's directory down to what differs from the
// default, so fixes to the built-in Rego reach every deployment.
func LoadDir(dir string) (*Bundle, error) {
	b, err := Load(os.DirFS(dir), dir)
	if err != nil {
		return nil, err
	}
	extends, ok := extendsOf(b.Documents)
	if !ok {
		return b, nil
	}
	if extends != BuiltIn {
		return nil, fmt.Errorf("policies: load %s: keygate.extends must be %q, got %q", dir, BuiltIn, extends)
	}
	base, err := Load(Default(), BuiltIn)
	if err != nil {
		return nil, err
	}
	return layer(base, b), nil
}

// extendsOf reads keygate.extends from a bundle's data.
func extendsOf(doc map[string]any) (string, bool) {
	kg, _ := doc["keygate"].(map[string]any)
	v, ok := kg["extends"]
	if !ok {
		return "", false
	}
	s, _ := v.(string)
	return s, true
}

// layer puts top over base as LoadDir describes.
func layer(base, top *Bundle) *Bundle {
	out := &Bundle{Source: top.Source, Extends: base.Source, Modules: map[string]*ast.Module{}, builtinFiles: map[string]bool{}}
	replaced := map[string]bool{}
	for name := range top.Modules {
		replaced[path.Base(name)] = true
	}
	for name, m := range base.Modules {
		if isTestFile(name) || replaced[path.Base(name)] {
			continue
		}
		out.Modules[name] = m
		out.builtinFiles[name] = true
	}
	for name, m := range top.Modules {
		out.Modules[name] = m
	}
	merged, _ := mergeData(base.Documents, top.Documents).(map[string]any)
	out.Documents = merged
	return out
}

// mergeData merges top over base: objects key by key, null deletes, and
// any other value replaces. Neither input is modified.
func mergeData(base, top any) any {
	bm, bok := base.(map[string]any)
	tm, tok := top.(map[string]any)
	if !bok || !tok {
		return top
	}
	out := make(map[string]any, len(bm)+len(tm))
	for k, v := range bm {
		out[k] = v
	}
	for k, v := range tm {
		if v == nil {
			delete(out, k)
			continue
		}
		if old, ok := out[k]; ok {
			out[k] = mergeData(old, v)
		} else {
			out[k] = v
		}
	}
	return out
}
