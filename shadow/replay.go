package shadow

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/keygate/keygate/policies"
)

// Record is the part of a decision-log line that replay reads: the live
// answer and the input the live policy saw.
type Record struct {
	DecisionID string          `json:"decision_id"`
	Allow      bool            `json:"allow"`
	Status     int             `json:"status"`
	Code       string          `json:"code"`
	Rule       string          `json:"rule"`
	Input      json.RawMessage `json:"input"`
}

// maxLine bounds one decision-log line replay reads.
const maxLine = 4 << 20

// ReplayStats says what a replay read besides the decisions it replayed.
type ReplayStats struct {
	Lines int `json:"lines"`
	// NoInput counts lines without a recorded input (nothing to replay).
	NoInput int `json:"no_input"`
	// Malformed counts lines that are not a decision-log record.
	Malformed int `json:"malformed"`
}

// Replay decides every recorded input of a decision log with candidate and
// tallies the live answer against the candidate's. Lines it cannot use are
// counted, not fatal: a log being written may end in half a line.
func Replay(ctx context.Context, candidate *policies.Policy, log io.Reader) (*Tally, ReplayStats, error) {
	t := NewTally()
	var st ReplayStats
	sc := bufio.NewScanner(log)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		st.Lines++
		var rec Record
		if err := json.Unmarshal(line, &rec); err != nil || rec.DecisionID == "" {
			st.Malformed++
			continue
		}
		if len(rec.Input) == 0 || string(rec.Input) == "null" {
			st.NoInput++
			continue
		}
		if err := ctx.Err(); err != nil {
			return t, st, err
		}
		live := policies.Decision{Allow: rec.Allow, Status: rec.Status, Code: rec.Code, Rule: rec.Rule}
		r := resultOf(candidate.DecideJSON(ctx, rec.Input))
		r.Differs = differs(live, r)
		t.Add(rec.DecisionID, live, r)
	}
	if err := sc.Err(); err != nil {
		return t, st, fmt.Errorf("shadow: replay: read decision log: %w", err)
	}
	return t, st, nil
}
