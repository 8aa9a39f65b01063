package policies

import (
	"slices"
	"strings"

	"github.com/keygate/keygate/internal/ascii"
)

// pathIndex is every path-like string ("/…") in a policy's data, found once
// per load. Policies ask few questions of a path: which of the prefixes
// their data lists it starts with, which site segment follows one, whether
// it is one of the exact paths listed. keygate answers them for every
// request as input.request.prefixes (each such string the path starts with
// → the path segment right after it) and input.request.exact_path (the
// path, when the data lists it), so a policy that reads those instead of
// input.request.path decides /v1/videos/vid_1 and /v1/videos/vid_2 alike,
// and the decision memo can leave the raw path out of its key.
type pathIndex []string

// noPrefixes is the (read-only) answer for a path that starts with none of
// the strings: present, so policies can tell keygate's input from a test's.
var noPrefixes = map[string]string{}

// newPathIndex collects the path-like strings of the data, sorted and
// without duplicates.
func newPathIndex(documents map[string]any) pathIndex {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			if strings.HasPrefix(v, "/") {
				out = append(out, v)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		case map[string]any:
			for k, x := range v {
				if strings.HasPrefix(k, "/") {
					out = append(out, k)
				}
				walk(x)
			}
		}
	}
	walk(documents)
	slices.Sort(out)
	return slices.Compact(out)
}

// atBoundary reports whether a path that starts with s and goes on with
// rest has s as a route prefix: a prefix matches whole segments, so
// "/v1/usage" matches "/v1/usage" and "/v1/usage/x" but not
// "/v1/usage-export" (which an operator did not make free); one ending in
// "/" matches whatever follows.
func atBoundary(rest, s string) bool {
	return rest == "" || strings.HasSuffix(s, "/") || rest[0] == '/'
}

// classify sets r.Prefixes, r.ExactPath and r.CaseFolded from r.Path.
func (ix pathIndex) classify(r *Request) { ix.classifyInto(r, nil) }

// classifyInto is classify that fills scratch (an empty map, or nil to
// allocate one) when the path starts with any of the strings.
func (ix pathIndex) classifyInto(r *Request, scratch map[string]string) {
	r.Prefixes, r.ExactPath, r.CaseFolded = noPrefixes, "", nil
	for _, s := range ix {
		rest, ok := strings.CutPrefix(r.Path, s)
		if !ok || !atBoundary(rest, s) {
			if !ok && len(r.Path) >= len(s) && ascii.EqualFold(r.Path[:len(s)], s) && atBoundary(r.Path[len(s):], s) {
				r.CaseFolded = append(r.CaseFolded, s)
			}
			continue
		}
		if rest == "" {
			r.ExactPath = s
		}
		if len(r.Prefixes) == 0 {
			r.Prefixes = scratch
			if r.Prefixes == nil {
				r.Prefixes = make(map[string]string, 2)
			}
		}
		segment, _, _ := strings.Cut(rest, "/")
		r.Prefixes[s] = segment
	}
}

// ownSitePrefixes appends to dst the prefixes of in's classified path whose
// segment is in's site id, sorted (input.request.own_site_prefixes). None
// without a site, or for a site without an id.
func ownSitePrefixes(dst []string, in *Input) []string {
	if in.Site == nil || in.Site.ID == "" {
		return nil
	}
	for prefix, segment := range in.Request.Prefixes {
		if segment == in.Site.ID {
			dst = append(dst, prefix)
		}
	}
	if len(dst) == 0 {
		return nil
	}
	slices.Sort(dst)
	return dst
}
