package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cli runs keygate in-process with a fresh environment: KEYGATE_STORE
// names a database in a temporary directory (created by `serve`-like
// setup only when the test asks).
type cli struct {
	t   *testing.T
	env map[string]string
	dir string
}

func newCLI(t *testing.T) *cli {
	dir := t.TempDir()
	return &cli{t: t, dir: dir, env: map[string]string{"KEYGATE_STORE": "sqlite:" + filepath.Join(dir, "keygate.db")}}
}

// run returns stdout, stderr and the exit status main would use.
func (c *cli) run(args ...string) (string, string, int) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return c.env[k] }, &out, &errOut)
	code := 0
	if err != nil {
		code = exitCode(err)
		if err != errUsage { //nolint:errorlint // as main does
			errOut.WriteString("keygate: " + err.Error() + "\n")
		}
	}
	return out.String(), errOut.String(), code
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("keygate %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// withDatabase creates the store as serve would, plus an account and a site.
func (c *cli) withDatabase() *cli {
	c.t.Helper()
	e := &environment{getenv: func(k string) string { return c.env[k] }}
	st, err := e.openOrCreate(context.Background(), storeFlags{store: c.env["KEYGATE_STORE"], keyPrefix: "kg"})
	if err != nil {
		c.t.Fatal(err)
	}
	st.Close()
	c.must("accounts", "create", "--id", "acme", "--plan", "pro")
	c.must("sites", "create", "--id", "acme-web", "--account", "acme", "--domain", "acme.com")
	return c
}

// Trap: a management command run where no database is silently created an
// empty one, and the only hint was `site "demo-site": not found`.
func TestManagementRefusesMissingDatabase(t *testing.T) {
	c := newCLI(t)
	c.env = map[string]string{} // the default store, in the current directory
	t.Chdir(c.dir)
	for _, args := range [][]string{
		{"keys", "list", "--site", "demo-site"},
		{"accounts", "create", "--id", "a", "--plan", "pro"},
		{"check", "--path", "/v1/x"},
	} {
		_, errOut, code := c.run(args...)
		if code != 1 || !strings.Contains(errOut, "no keygate database at ./keygate.db; start keygate serve here or pass --store") {
			t.Errorf("keygate %s: exit %d, %q", strings.Join(args, " "), code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(c.dir, "keygate.db")); err == nil {
		t.Error("a management command created keygate.db")
	}
}

// Trap: -h/--help answered `unknown subcommand "--help"` or exited 2, and
// subcommand help listed its siblings' flags.
func TestHelpEverywhere(t *testing.T) {
	c := newCLI(t)
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"keys", "--help"}, {"limits", "-h"}, {"accounts", "create", "-h"},
		{"sites", "rotate-key", "--help"}, {"policy", "test", "-h"}, {"serve", "-h"}, {"check", "--help"}, {"help", "keys"},
	} {
		out, errOut, code := c.run(args...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("keygate %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	out, _, _ := c.run("keys", "create", "--help")
	for _, own := range []string{"--site", "--mode", "--expires-at", "--json"} {
		if !strings.Contains(out, own) {
			t.Errorf("keys create --help lacks %s:\n%s", own, out)
		}
	}
	for _, sibling := range []string{"--grace", "--domain", "--after", "--account"} {
		if strings.Contains(out, sibling) {
			t.Errorf("keys create --help lists another command's flag %s:\n%s", sibling, out)
		}
	}
	if out, _, _ := c.run("keys", "revoke", "--help"); !strings.Contains(out, "keygate keys revoke ID") {
		t.Errorf("keys revoke --help does not show its argument:\n%s", out)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	c := newCLI(t)
	want := versionString() + "\n"
	// As cobra's own --version did: what follows it is ignored.
	for _, args := range [][]string{{"version"}, {"--version"}, {"-v"}, {"--version", "keys"}, {"-v", "serve"}, {"-v", "completion", "bash"}} {
		if out := c.must(args...); !strings.HasPrefix(out, "keygate ") || out != want {
			t.Errorf("keygate %s: %q, want %q", args, out, want)
		}
	}
	// Help asked for after --version is the whole tree's, as before.
	if out := c.must("-v", "--help"); !strings.Contains(out, "Available Commands") || !strings.Contains(out, "serve") {
		t.Errorf("keygate -v --help lists no commands:\n%s", out)
	}
	for shell, marker := range map[string]string{"bash": "complete", "zsh": "#compdef keygate", "fish": "complete -c keygate"} {
		if out := c.must("completion", shell); !strings.Contains(out, marker) {
			t.Errorf("completion %s lacks %q", shell, marker)
		}
	}
}

func TestUsageMistakesExit2(t *testing.T) {
	c := newCLI(t).withDatabase()
	for _, args := range [][]string{
		{}, {"nope"}, {"keys"}, {"keys", "bogus"}, {"keys", "create", "--nope"}, {"keys", "revoke"},
		{"keys", "create", "--site", "acme-web"}, {"accounts", "create", "--id", "x"},
	} {
		_, errOut, code := c.run(args...)
		if code != 2 {
			t.Errorf("keygate %s: exit %d, want 2: %s", strings.Join(args, " "), code, errOut)
		}
	}
	if _, errOut, _ := c.run("keys", "create", "--site", "acme-web"); !strings.Contains(errOut, `--mode "": want live or test`) || strings.Contains(errOut, "keystore") {
		t.Errorf("missing --mode: %s", errOut)
	}
}

// Flags keep their names and KEYGATE_<FLAG> variables.
func TestFlagsFromEnvironment(t *testing.T) {
	c := newCLI(t).withDatabase()
	c.env["KEYGATE_SITE"] = "acme-web"
	c.env["KEYGATE_MODE"] = "test"
	out := c.must("keys", "create", "--json")
	var k map[string]any
	if err := json.Unmarshal([]byte(out), &k); err != nil || k["mode"] != "test" || k["site"] != "acme-web" {
		t.Fatalf("keys create from KEYGATE_SITE/KEYGATE_MODE: %v %s", err, out)
	}
	if _, errOut, code := c.run("keys", "create", "--mode", "prod"); code != 2 || !strings.Contains(errOut, `"prod"`) {
		t.Errorf("a flag overrides the environment: exit %d %s", code, errOut)
	}
}

// Trap: accounts and sites could not be listed or read back.
func TestReadSide(t *testing.T) {
	c := newCLI(t).withDatabase()
	c.must("accounts", "create", "--id", "beta", "--plan", "plus", "--status", "trialing")
	c.must("sites", "create", "--id", "beta-web", "--account", "beta")
	key := c.must("keys", "create", "--site", "acme-web", "--mode", "live", "--name", "prod", "--json")
	var created map[string]any
	_ = json.Unmarshal([]byte(key), &created)

	var accounts struct {
		Accounts []map[string]any
		Next     string
	}
	if err := json.Unmarshal([]byte(c.must("accounts", "list", "--json", "--limit", "1")), &accounts); err != nil ||
		len(accounts.Accounts) != 1 || accounts.Accounts[0]["id"] != "acme" || accounts.Next != "acme" {
		t.Errorf("accounts list page 1: %v %+v", err, accounts)
	}
	if out := c.must("accounts", "list", "--after", "acme"); !strings.Contains(out, "beta") || strings.Contains(out, "acme ") {
		t.Errorf("accounts list page 2:\n%s", out)
	}
	if out := c.must("accounts", "show", "beta"); !strings.Contains(out, "trialing") || !strings.Contains(out, "PLAN") {
		t.Errorf("accounts show:\n%s", out)
	}
	if out := c.must("sites", "list", "--account", "beta", "--json"); !strings.Contains(out, `"beta-web"`) || strings.Contains(out, "acme-web") {
		t.Errorf("sites list --account:\n%s", out)
	}
	if out := c.must("sites", "show", "acme-web", "--json"); !strings.Contains(out, `"acme.com"`) {
		t.Errorf("sites show:\n%s", out)
	}
	out := c.must("keys", "show", created["id"].(string), "--json")
	if !strings.Contains(out, `"prod"`) || strings.Contains(out, created["key"].(string)) {
		t.Errorf("keys show (never the secret):\n%s", out)
	}
	_, errOut, code := c.run("accounts", "show", "nope")
	if code != 1 || !strings.Contains(errOut, `account "nope" not found`) || !strings.Contains(errOut, "keygate accounts list") {
		t.Errorf("accounts show nope: %d %s", code, errOut)
	}
}

// Trap: unknown plans, statuses and limit names were accepted, and limits
// set replaced instead of merging and printed Go's map[…].
func TestValidationAndLimits(t *testing.T) {
	c := newCLI(t).withDatabase()
	for args, want := range map[string]string{
		"accounts create --id x --plan platinum":            "unknown plan \"platinum\"; the policy's plans are enterprise, free, max, plus, pro, starter",
		"accounts update --id acme --plan gold":             "unknown plan \"gold\"",
		"accounts create --id x --plan pro --status paused": "valid statuses are active, trialing, trial_expired, inactive",
		"limits set --site acme-web --set speed=3":          "unknown limit \"speed\"; the policy's limits are burst, quota, rate",
	} {
		_, errOut, code := c.run(strings.Fields(args)...)
		if code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("keygate %s: exit %d %q, want 2 and %q", args, code, errOut, want)
		}
	}
	c.must("limits", "set", "--site", "acme-web", "--set", "rate=2")
	out := c.must("limits", "set", "--site", "acme-web", "--set", "quota=5")
	if strings.Contains(out, "map[") || !strings.Contains(out, "rate") || !strings.Contains(out, "quota") {
		t.Errorf("limits set merges and prints a table:\n%s", out)
	}
	out = c.must("limits", "set", "--site", "acme-web", "--unset", "rate", "--json")
	var l struct{ Limits map[string]int64 }
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Limits) != 1 || l.Limits["quota"] != 5 {
		t.Errorf("--unset rate: %v %s", err, out)
	}
}

// Trap: messages doubled the store's prefix or did not name the object.
func TestMessagesNameObjectAndFix(t *testing.T) {
	c := newCLI(t).withDatabase()
	for args, want := range map[string]string{
		"accounts create --id acme --plan pro":            `account "acme" already exists; pick another --id, or change it with keygate accounts update --id acme`,
		"keys revoke key_missing":                         `key "key_missing" not found`,
		"sites create --id s --account ghost":             `account "ghost"`,
		"policy test /no/such/dir":                        "no policy directory at /no/such/dir",
		"keys list --site s --store sqlite:/no/such/x.db": "no keygate database at /no/such/x.db",
		"keys list --site s --store sqlite:" + c.dir:      "opening the store sqlite:" + c.dir,
	} {
		_, errOut, code := c.run(strings.Fields(args)...)
		if code == 0 || !strings.Contains(errOut, want) || strings.Count(errOut, "keystore") > 0 {
			t.Errorf("keygate %s: exit %d %q, want %q without the store's prefixes", args, code, errOut, want)
		}
	}
}

// Trap: rotate-key (mode live) also revoked the site's test keys.
func TestRotateKeyKeepsOtherMode(t *testing.T) {
	c := newCLI(t).withDatabase()
	var test map[string]any
	_ = json.Unmarshal([]byte(c.must("keys", "create", "--site", "acme-web", "--mode", "test", "--json")), &test)
	c.must("keys", "create", "--site", "acme-web", "--mode", "live")
	_, errOut, _ := c.run("sites", "rotate-key", "--id", "acme-web")
	if !strings.Contains(errOut, "1 live key(s) revoked now") {
		t.Errorf("rotate-key does not say what it revoked: %s", errOut)
	}
	if out := c.must("keys", "show", test["id"].(string), "--json"); !strings.Contains(out, `"revoked_at": null`) {
		t.Errorf("live rotation revoked the test key:\n%s", out)
	}
	out := c.must("sites", "rotate-key", "--id", "acme-web", "--mode", "all", "--json")
	if !strings.Contains(out, test["id"].(string)) {
		t.Errorf("--mode all keeps the test key:\n%s", out)
	}
}

// Trap: check exited 0 on a deny and had no --imported-keys.
func TestCheckExitStatusAndImportedKeys(t *testing.T) {
	c := newCLI(t).withDatabase()
	out, _, code := c.run("check", "--path", "/v1/videos")
	if code != 3 || !strings.Contains(out, `"MISSING_API_KEY"`) {
		t.Errorf("check of a deny: exit %d\n%s", code, out)
	}
	key := strings.TrimSpace(strings.SplitN(c.must("keys", "create", "--site", "acme-web", "--mode", "live"), "\n", 2)[0])
	if out, _, code := c.run("check", "--path", "/v1/videos", "-H", "Authorization: Bearer "+key); code != 0 || !strings.Contains(out, `"allow": true`) {
		t.Errorf("check of an allow: exit %d\n%s", code, out)
	}
	c.stdin(t, "legacy-secret-0123456789\n")
	c.must("keys", "import", "--site", "acme-web", "--mode", "live")
	if _, _, code := c.run("check", "--path", "/v1/videos", "-H", "X-API-Key: legacy-secret-0123456789"); code != 3 {
		t.Errorf("an imported key without --imported-keys: exit %d, want 3", code)
	}
	if out, _, code := c.run("check", "--imported-keys", "--path", "/v1/videos", "-H", "X-API-Key: legacy-secret-0123456789"); code != 0 {
		t.Errorf("check --imported-keys: exit %d\n%s", code, out)
	}
	if out, _, _ := c.run("check", "--help"); !strings.Contains(out, "does not ask a running server") || !strings.Contains(out, "3 when it would be denied") {
		t.Errorf("check --help does not document what it reads and its exit status:\n%s", out)
	}
}

// stdin replaces os.Stdin for the rest of the test.
func (c *cli) stdin(t *testing.T, s string) {
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(s)
	f.Seek(0, 0)
	old := os.Stdin
	os.Stdin = f
	t.Cleanup(func() { os.Stdin = old; f.Close() })
}

// TestCommandsByName: a run builds only the command its first argument
// names (commandTree), found by the name in commands, which must be the
// command's own.
func TestCommandsByName(t *testing.T) {
	e := &environment{getenv: func(string) string { return "" }}
	for _, c := range commands {
		if got := c.build(e).Name(); got != c.name {
			t.Errorf("commands lists %q for the command named %q", c.name, got)
		}
		if subs := e.commandTree([]string{c.name, "--help"}).Commands(); len(subs) != 1 || subs[0].Name() != c.name {
			t.Errorf("keygate %s builds %d commands", c.name, len(subs))
		}
	}
	// Help, completion, flags before the command and typos get the whole tree.
	for _, args := range [][]string{nil, {"--help"}, {"serv"}, {"help", "serve"}, {"__complete", "se"}, {"--store", "x", "keys"}} {
		if got := len(e.commandTree(args).Commands()); got != len(commands) {
			t.Errorf("keygate %q builds %d commands, want all %d", args, got, len(commands))
		}
	}
}
