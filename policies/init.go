package policies

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// InitLayer writes the skeleton of a layer on the built-in policy into dir:
// a data.yaml that extends the built-in policy, with every setting of the
// built-in data commented out beneath an empty config, and a test file that
// passes as written. dir must not exist or be empty, so nothing a team wrote
// is overwritten. It returns the files it wrote.
func InitLayer(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("policies: init %s: %w", dir, err)
		}
	case err != nil:
		return nil, fmt.Errorf("policies: init %s: %w", dir, err)
	case len(entries) > 0:
		return nil, fmt.Errorf("policies: init %s: the directory is not empty; choose a new directory", dir)
	}
	builtin, err := fs.ReadFile(Default(), "data.yaml")
	if err != nil {
		return nil, fmt.Errorf("policies: init %s: %w", dir, err)
	}
	files := []struct{ name, body string }{
		{"data.yaml", skeletonData(builtin)},
		{"layer_test.rego", skeletonTest},
	}
	var wrote []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte(f.body), 0o644); err != nil {
			return wrote, fmt.Errorf("policies: init %s: %w", dir, err)
		}
		wrote = append(wrote, p)
	}
	return wrote, nil
}

// skeletonData is a layer's data.yaml: extends built-in and an empty config
// holding, as comments, every setting of the built-in config at the
// indentation it would have, so a team uncomments what it changes.
func skeletonData(builtin []byte) string {
	var b strings.Builder
	b.WriteString(`# A layer on keygate's built-in policy (keygate policy init). Only what
# differs from the built-in data goes here: objects merge key by key over
# the built-in data; lists, strings and numbers replace it; null deletes.
# .rego files beside this one add rules (a file named like a built-in one,
# say response.rego, replaces it).
#
#   keygate policy test DIR          # this layer's tests, on the built-in policy
#   keygate serve --policies DIR
keygate:
  extends: built-in
  # Every built-in setting follows, commented out. To change one, delete
  # the {} after config: and uncomment the setting (remove "# ").
  config: {}
`)
	inConfig := false
	sc := bufio.NewScanner(bytes.NewReader(builtin))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "config:" {
			inConfig = true
			continue
		}
		if !inConfig {
			continue
		}
		body := strings.TrimPrefix(line, "    ")
		if strings.TrimSpace(body) == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString("    # " + body + "\n")
	}
	return b.String()
}

// skeletonTest is a layer's first test file: it passes against the built-in
// behaviour and shows how to write a decision test for the layer.
const skeletonTest = `# Tests of this layer: keygate policy test DIR runs them against the
# built-in policy with this directory's data and rules on top. Add a test
# for every setting you change.
package keygate.layer_test

import rego.v1

import data.keygate.authz

# A found live key of an active account on a plan with API access.
key_request(plan) := {
	"request": {"method": "GET", "host": "api.example.test", "path": "/v1/videos", "query": "", "path_ok": true, "headers": {}},
	"credential": {"status": "found", "kind": "key", "scheme": "bearer"},
	"key": {"id": "key_1", "mode": "live", "name": "", "revoked": false, "expired": false},
	"site": {"id": "site-a", "account": "acct", "domains": [], "active": true},
	"account": {"id": "acct", "plan": plan, "status": "active"},
}

decide(inp) := d if {
	d := authz.decision with input as inp
}

test_api_plans_allowed if {
	every plan in {plan | some plan, p in data.keygate.config.plans; p.api} {
		decide(key_request(plan)).allow
	}
}

test_missing_key_refused if {
	d := decide(json.patch(key_request("pro"), [
		{"op": "replace", "path": "/credential", "value": {"status": "missing", "kind": "", "scheme": ""}},
		{"op": "remove", "path": "/key"}, {"op": "remove", "path": "/site"}, {"op": "remove", "path": "/account"},
	]))
	not d.allow
	d.code == object.get(data.keygate.config.errors.MISSING_API_KEY, "code", "MISSING_API_KEY")
}
`
