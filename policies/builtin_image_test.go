package policies

import (
	"bytes"
	"errors"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/keygate/keygate/policies/irvm"
)

// FuzzLoadBuiltinImage is irvm's FuzzLoadImage seeded with the image every
// start loads: a mutation of it is refused, or loads a Program that
// encodes to the same image. The seed is ~26 KB: run it with a short
// minimisation (go test -run XXX -fuzz FuzzLoadBuiltinImage
// -fuzzminimizetime 2s ./policies), or the fuzzer spends its minute
// minimising the seed (14 executions in 60 s with the default).
func FuzzLoadBuiltinImage(f *testing.F) {
	f.Add([]byte(builtinPlan.image))
	data, err := ast.InterfaceToValue(builtinPlan.data())
	if err != nil {
		f.Fatal(err)
	}
	caps := Capabilities()
	f.Fuzz(func(t *testing.T, img []byte) {
		prog, err := irvm.LoadImage(string(img), data, caps)
		if err != nil {
			if !errors.Is(err, irvm.ErrImage) {
				t.Fatalf("an error not irvm.ErrImage: %v", err)
			}
			return
		}
		again, err := prog.AppendImage(nil)
		if err != nil || !bytes.Equal(again, img) {
			t.Fatalf("the loaded Program's image differs (%v)", err)
		}
	})
}
