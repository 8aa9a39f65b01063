package shadow

import (
	"sort"

	"github.com/keygate/keygate/policies"
)

// maxExamples is how many decision ids a row keeps, so support staff can
// look the requests up in the decision log.
const maxExamples = 3

// maxRules bounds the candidate rules a row counts.
const maxRules = 16

// Row is one kind of outcome: the live answer, the candidate's, how often,
// which candidate rules decided, and example decision ids.
type Row struct {
	Live     string         `json:"live_code"`
	Shadow   string         `json:"shadow_code"`
	Count    uint64         `json:"count"`
	Rules    map[string]int `json:"shadow_rules,omitempty"`
	Examples []string       `json:"examples,omitempty"`
	differs  bool
}

// Tally counts outcomes by (live code, candidate code). Not safe for
// concurrent use.
type Tally struct {
	rows      map[[2]string]*Row
	total     uint64
	differing uint64
}

// NewTally returns an empty tally.
func NewTally() *Tally { return &Tally{rows: map[[2]string]*Row{}} }

// Add counts one decision.
func (t *Tally) Add(id string, live policies.Decision, r Result) {
	k := [2]string{Code(live), r.Code}
	row := t.rows[k]
	if row == nil {
		row = &Row{Live: k[0], Shadow: k[1], Rules: map[string]int{}}
		t.rows[k] = row
	}
	row.Count++
	row.differs = row.differs || r.Differs
	t.total++
	if r.Differs {
		t.differing++
	}
	if rule := r.Rule; rule != "" {
		if _, ok := row.Rules[rule]; ok || len(row.Rules) < maxRules {
			row.Rules[rule]++
		}
	}
	if id != "" && len(row.Examples) < maxExamples {
		row.Examples = append(row.Examples, id)
	}
}

// Total is how many decisions were counted.
func (t *Tally) Total() uint64 { return t.total }

// Differing is how many decisions the candidate would have answered
// differently.
func (t *Tally) Differing() uint64 { return t.differing }

// Rows lists the outcomes, most frequent first (then by codes, so the
// order is stable); onlyDiffering leaves out the ones the candidate agrees
// with; limit > 0 keeps that many.
func (t *Tally) Rows(onlyDiffering bool, limit int) []Row {
	out := make([]Row, 0, len(t.rows))
	for _, r := range t.rows {
		if onlyDiffering && !r.differs {
			continue
		}
		c := *r
		c.Rules = make(map[string]int, len(r.Rules))
		for k, v := range r.Rules {
			c.Rules[k] = v
		}
		c.Examples = append([]string(nil), r.Examples...)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Live != b.Live {
			return a.Live < b.Live
		}
		return a.Shadow < b.Shadow
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}
