package extauthz

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/keygate/keygate/keystore"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// TestCheckGolden renders whole CheckResponses, allow and deny, and compares
// them with testdata/<name>.golden. Run `go test ./extauthz -run Golden
// -update` after an intended change and review the diff.
func TestCheckGolden(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	revoked, revokedSecret, err := f.store.CreateKey(ctx, keystore.KeySpec{SiteID: "acme-web", Mode: keystore.ModeLive})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.RevokeKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	expiresAt := fixedNow.Add(time.Hour)
	expiring, expiringSecret, err := f.store.CreateKey(ctx, keystore.KeySpec{SiteID: "acme-web", Mode: keystore.ModeLive, ExpiresAt: &expiresAt})
	if err != nil {
		t.Fatal(err)
	}
	testKey, err := f.cache.Key(ctx, []keystore.Digest{keystore.Digest(mustDigest(t, f.test))})
	if err != nil {
		t.Fatal(err)
	}
	// Key ids are random; golden files name them.
	ids := strings.NewReplacer(f.liveKey.ID, "LIVE_KEY_ID", testKey.Key.ID, "TEST_KEY_ID", revoked.ID, "REVOKED_KEY_ID", expiring.ID, "EXPIRING_KEY_ID")

	live, test := f.live.Reveal(), f.test.Reveal()
	badChecksum := live[:len(live)-1] + string(nextChar(live[len(live)-1]))
	unknown, _ := keystore.Format{Prefix: "kg"}.Generate(keystore.ModeLive)
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		later   time.Duration // how far the clock moves before the check
	}{
		{"allow_bearer_live", "/v1/videos?limit=10", map[string]string{"authorization": "Bearer " + live, "accept": "application/json"}, 0},
		{"allow_basic_live", "/v1/videos", map[string]string{"authorization": basic(live + ":")}, 0},
		{"allow_x_api_key_test", "/v1/videos", map[string]string{"x-api-key": test}, 0},
		{"allow_same_key_twice", "/v1/videos", map[string]string{"authorization": "Bearer " + live, "x-api-key": live}, 0},
		{"allow_spoofed_identity", "/v1/sites/acme-web/videos", map[string]string{"authorization": "Bearer " + live,
			"x-keygate-account": "evil", "x-keygate-mode": "live", "x-keygate-admin": "true", "x-keygate-role": "owner", "x-keygate-key-id": "key_evil"}, 0},
		{"allow_public_health", "/health", map[string]string{"x-keygate-account": "evil"}, 0},
		{"deny_missing", "/v1/videos", nil, 0},
		{"deny_garbage", "/v1/videos", map[string]string{"authorization": "Bearer not-a-key"}, 0},
		{"deny_bad_checksum", "/v1/videos", map[string]string{"x-api-key": badChecksum}, 0},
		{"deny_unknown_key", "/v1/videos", map[string]string{"x-api-key": unknown.Reveal()}, 0},
		{"deny_revoked", "/v1/videos", map[string]string{"authorization": "Bearer " + revokedSecret.Reveal()}, 0},
		{"deny_expired", "/v1/videos", map[string]string{"authorization": "Bearer " + expiringSecret.Reveal()}, 2 * time.Hour},
		{"deny_ambiguous", "/v1/videos", map[string]string{"authorization": "Bearer " + live, "x-api-key": test}, 0},
		{"deny_site_mismatch", "/v1/sites/other/videos", map[string]string{"authorization": "Bearer " + live}, 0},
		{"deny_path_trick", "/v1/sites/other/../acme-web/videos", map[string]string{"authorization": "Bearer " + live}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.now = fixedNow.Add(tt.later)
			defer func() { f.now = fixedNow }()
			resp, err := f.server.Check(ctx, envoyCheckRequest("GET", tt.path, tt.headers))
			if err != nil {
				t.Fatalf("Check returned a gRPC error: %v", err)
			}
			got := normalize(t, resp, ids)
			file := filepath.Join("testdata", tt.name+".golden")
			if *update {
				b, err := protojson.Marshal(got)
				if err != nil {
					t.Fatal(err)
				}
				// protojson varies its spacing on purpose; fix it so that
				// -update rewrites only what changed.
				var out bytes.Buffer
				if err := json.Indent(&out, b, "", "  "); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, append(out.Bytes(), '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			want := &authv3.CheckResponse{}
			if err := protojson.Unmarshal(b, want); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
				t.Errorf("CheckResponse differs from %s (-want +got):\n%s", file, diff)
			}
		})
	}
}

var decisionIDs = regexp.MustCompile(`\b[0-9A-HJKMNP-TV-Z]{26}\b`)

// normalize replaces random key ids with the names golden files use.
func normalize(t *testing.T, resp *authv3.CheckResponse, ids *strings.Replacer) *authv3.CheckResponse {
	t.Helper()
	b, err := protojson.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	out := &authv3.CheckResponse{}
	// Decision ids are ULIDs, new for every decision.
	named := decisionIDs.ReplaceAllString(ids.Replace(string(b)), "DECISION_ID")
	if err := protojson.Unmarshal([]byte(named), out); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustDigest(t *testing.T, s keystore.Secret) string {
	t.Helper()
	d, err := keystore.NewDigester()
	if err != nil {
		t.Fatal(err)
	}
	return string(d.Primary(s.Reveal()))
}

// nextChar changes a base62 character to another base62 character.
func nextChar(c byte) byte {
	if c == 'z' {
		return '0'
	}
	if c == '9' {
		return 'A'
	}
	if c == 'Z' {
		return 'a'
	}
	return c + 1
}
