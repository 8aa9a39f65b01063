package policies

import (
	"bytes"
	"context"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// maxRecordedInput bounds a recorded input DecideJSON accepts.
const maxRecordedInput = 1 << 20

// DecideJSON decides a recorded input: the JSON document a decision log
// holds, as the live policy saw it. It never uses the decision memo, so a
// replay measures the policy itself.
func (p *Policy) DecideJSON(ctx context.Context, input []byte) (Decision, error) {
	if len(input) > maxRecordedInput {
		return Decision{}, fmt.Errorf("policies: recorded input of %d bytes is over the %d-byte bound", len(input), maxRecordedInput)
	}
	v, err := ast.ValueFromReader(bytes.NewReader(input))
	if err != nil {
		return Decision{}, fmt.Errorf("policies: recorded input: %w", err)
	}
	if _, ok := v.(ast.Object); !ok {
		return Decision{}, fmt.Errorf("policies: recorded input must be a JSON object")
	}
	return p.decideValue(ctx, v)
}
