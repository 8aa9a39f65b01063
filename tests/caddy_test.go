package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// caddySnippet is the Caddyfile the README shows under **Caddy**.
func caddySnippet(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "**Caddy**")
	if !ok {
		t.Fatal("README has no **Caddy** section")
	}
	_, rest, _ = strings.Cut(rest, "```\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok || !strings.Contains(block, "forward_auth") {
		t.Fatalf("README's Caddy snippet not found: %q", block)
	}
	return block
}

// startCaddy runs the README's snippet as the current user on a free
// loopback port, with its admin endpoint and automatic HTTPS off and its
// state in a temporary directory; it is stopped when the test ends. It
// returns the base URL.
func startCaddy(t *testing.T, bin, keygateAddr, upstreamAddr string) string {
	t.Helper()
	dir := t.TempDir()
	port := closedAddr(t)
	site := strings.NewReplacer("api.example.com", "http://"+port, "keygate:8080", keygateAddr, "app:9000", upstreamAddr).
		Replace(caddySnippet(t))
	conf := "{\n\tadmin off\n\tauto_https off\n}\n\n" + site
	confPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "run", "--config", confPath, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	runProxy(t, cmd, cancel, port, func() string { return "Caddyfile:\n" + conf })
	return "http://" + port
}
