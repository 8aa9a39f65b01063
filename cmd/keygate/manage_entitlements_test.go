package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

type keyJSON struct {
	ID           string            `json:"id"`
	Key          string            `json:"key"`
	Name         string            `json:"name"`
	Scopes       []string          `json:"scopes"`
	AllowedCIDRs []string          `json:"allowed_cidrs"`
	Meta         map[string]string `json:"meta"`
	Limits       map[string]int64  `json:"limits"`
	Remaining    *int64            `json:"remaining"`
	Refill       *struct {
		Interval string `json:"interval"`
		Amount   int64  `json:"amount"`
	} `json:"refill"`
	ExpiresAt    *time.Time `json:"expires_at"`
	OldKeyID     string     `json:"old_key_id"`
	OldExpiresAt *time.Time `json:"old_expires_at"`
}

func decodeKey(t *testing.T, out string) keyJSON {
	t.Helper()
	var k keyJSON
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	return k
}

func TestKeysEntitlementsCLI(t *testing.T) {
	c := newCLI(t).withDatabase()
	k := decodeKey(t, c.must("keys", "create", "--site", "acme-web", "--mode", "live", "--json",
		"--scope", "videos:read", "--scope", "audio:*", "--allow-cidr", "10.1.2.3/8", "--allow-cidr", "2001:db8::/48",
		"--meta", "tier=gold", "--meta", "ref=cus_42", "--rate", "5", "--burst", "10", "--quota", "1000",
		"--uses", "3", "--refill", "monthly:3"))
	if strings.Join(k.Scopes, " ") != "audio:* videos:read" || strings.Join(k.AllowedCIDRs, " ") != "10.0.0.0/8 2001:db8::/48" ||
		k.Meta["tier"] != "gold" || k.Meta["ref"] != "cus_42" || k.Limits["rate"] != 5 || k.Limits["burst"] != 10 || k.Limits["quota"] != 1000 ||
		k.Remaining == nil || *k.Remaining != 3 || k.Refill == nil || k.Refill.Interval != "monthly" || k.Refill.Amount != 3 || k.Key == "" {
		t.Fatalf("created %+v", k)
	}
	show := strings.Join(strings.Fields(c.must("keys", "show", k.ID)), " ")
	for _, want := range []string{"scopes: audio:* videos:read", "allowed cidrs: 10.0.0.0/8 2001:db8::/48", "meta: ref=cus_42 tier=gold",
		"limits: burst=10 quota=1000 rate=5", "remaining: 3 (refill monthly:3)"} {
		if !strings.Contains(show, want) {
			t.Errorf("keys show lacks %q:\n%s", want, show)
		}
	}
	if strings.Contains(show, k.Key) || strings.Contains(c.must("keys", "list", "--site", "acme-web", "--json"), k.Key) {
		t.Error("show or list printed the secret")
	}
	if list := strings.Join(strings.Fields(c.must("keys", "list", "--site", "acme-web")), " "); !strings.Contains(list, "REVOKED SCOPES REMAINING") ||
		!strings.Contains(list, "audio:*,videos:read 3") {
		t.Errorf("keys list lacks scopes and remaining:\n%s", list)
	}

	u := decodeKey(t, c.must("keys", "update", k.ID, "--json", "--scope", "videos:write", "--unset-meta", "ref", "--meta", "tier=silver",
		"--rate", "7", "--uses", "9"))
	if strings.Join(u.Scopes, " ") != "videos:write" || len(u.Meta) != 1 || u.Meta["tier"] != "silver" || u.Limits["rate"] != 7 ||
		u.Limits["quota"] != 1000 || *u.Remaining != 9 || u.Refill == nil || len(u.AllowedCIDRs) != 2 {
		t.Errorf("updated %+v", u)
	}
	u = decodeKey(t, c.must("keys", "update", k.ID, "--json", "--unset-scopes", "--unset-cidrs", "--unset-limits", "--unset-uses", "--unset-meta", "tier"))
	if len(u.Scopes)+len(u.AllowedCIDRs)+len(u.Meta)+len(u.Limits) != 0 || u.Remaining != nil || u.Refill != nil {
		t.Errorf("after --unset-…: %+v", u)
	}

	for args, want := range map[string]string{
		"--scope Videos:read":                     "--scope",
		"--scope videos":                          "--scope",
		"--allow-cidr 10.0.0.0/33":                "--allow-cidr",
		"--allow-cidr example.com":                "--allow-cidr",
		"--meta Tier=gold":                        "--meta",
		"--meta tier":                             "--meta",
		"--uses -1":                               "--uses",
		"--uses 3 --refill weekly:3":              "--refill",
		"--refill daily:3":                        "--refill",
		"--uses 1 --refill daily:0":               "--refill",
		"--rate -5":                               "--rate",
		"--meta tier=" + strings.Repeat("x", 257): "--meta",
	} {
		full := append([]string{"keys", "create", "--site", "acme-web", "--mode", "live"}, strings.Fields(args)...)
		_, errOut, code := c.run(full...)
		if code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("keys create %s: exit %d %q, want 2 naming %s", args, code, errOut, want)
		}
	}
	for args, want := range map[string]string{
		k.ID:                                               "nothing to change",
		k.ID + " --scope a:b --unset-scopes":               "--unset",
		k.ID + " --allow-cidr 300.1.1.1":                   "--allow-cidr",
		k.ID + " --refill monthly:5":                       "--refill",
		"key_missing --scope a:b":                          `key "key_missing" not found`,
		k.ID + " --meta " + strings.Repeat("m", 33) + "=x": "--meta",
	} {
		_, errOut, code := c.run(append([]string{"keys", "update"}, strings.Fields(args)...)...)
		if code == 0 || !strings.Contains(errOut, want) || strings.Contains(errOut, "keystore") {
			t.Errorf("keys update %s: exit %d %q, want %q", args, code, errOut, want)
		}
	}
}

func TestKeysRollCLI(t *testing.T) {
	c := newCLI(t).withDatabase()
	old := decodeKey(t, c.must("keys", "create", "--site", "acme-web", "--mode", "live", "--name", "ci", "--json",
		"--scope", "videos:read", "--meta", "tier=gold"))
	before := time.Now()
	nu := decodeKey(t, c.must("keys", "roll", old.ID, "--grace", "2h", "--json"))
	if nu.ID == old.ID || nu.Key == "" || nu.Key == old.Key || nu.Name != "ci" || strings.Join(nu.Scopes, " ") != "videos:read" ||
		nu.Meta["tier"] != "gold" || nu.OldKeyID != old.ID || nu.OldExpiresAt == nil {
		t.Fatalf("rolled %+v", nu)
	}
	if d := nu.OldExpiresAt.Sub(before); d < 2*time.Hour-time.Minute || d > 2*time.Hour+time.Minute {
		t.Errorf("old key expires in %s, want 2h", d)
	}
	shown := decodeKey(t, c.must("keys", "show", old.ID, "--json"))
	if shown.ExpiresAt == nil || !shown.ExpiresAt.Equal(*nu.OldExpiresAt) {
		t.Errorf("old key shows expires_at %v", shown.ExpiresAt)
	}
	out, errOut, code := c.run("keys", "roll", nu.ID)
	if code != 0 || !strings.HasPrefix(out, "kg_live_") || strings.Count(out, "\n") != 1 || !strings.Contains(errOut, "shown only this once") {
		t.Errorf("plain roll: exit %d %q %q", code, out, errOut)
	}
	for args, want := range map[string]string{
		"key_missing":             `key "key_missing" not found`,
		old.ID + " --grace -1s":   "--grace",
		old.ID + " --grace 1000h": "--grace",
		old.ID + " --grace soon":  "grace",
		"":                        "usage",
	} {
		_, errOut, code := c.run(append([]string{"keys", "roll"}, strings.Fields(args)...)...)
		if code == 0 || !strings.Contains(errOut, want) {
			t.Errorf("keys roll %s: exit %d %q, want %q", args, code, errOut, want)
		}
	}
}
