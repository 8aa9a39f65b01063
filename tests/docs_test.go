package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// relativeRef is a path a README points at: a Markdown link target or a
// backticked ./… or ../… path.
var relativeRef = regexp.MustCompile("\\]\\(([^)#]+)\\)|`(\\.\\.?/[^`\\s]+)`")

// Trap: policies/examples/README.md linked to a path that does not exist in
// the repository. Every relative path a README names must exist.
func TestReadmePathsExist(t *testing.T) {
	for _, readme := range []string{"../README.md", "../policies/examples/README.md"} {
		body, err := os.ReadFile(readme)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range relativeRef.FindAllStringSubmatch(string(body), -1) {
			ref := m[1] + m[2]
			if strings.Contains(ref, "://") || strings.HasPrefix(ref, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(readme), ref)); err != nil {
				t.Errorf("%s names %s, which is not in the repository", readme, ref)
			}
		}
	}
}

// Trap: the README never said how to get the keygate command. The install
// command comes before the first line that runs keygate.
func TestReadmeInstallsBeforeUse(t *testing.T) {
	body, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	install := regexp.MustCompile(`(?m)^(go install (-tags vtprotobuf )?\./cmd/keygate|make install)`).FindIndex(body)
	use := regexp.MustCompile("(?m)^(\\$ )?keygate [a-z]").FindIndex(body)
	if install == nil || use == nil || install[0] > use[0] {
		t.Fatalf("README: the install command (at %v) must come before the first keygate command (at %v)", install, use)
	}
}
