package policies

import "github.com/open-policy-agent/opa/v1/ast"

// value renders a key's facts. The entitlements (scopes, allowed_cidrs,
// meta, limits, remaining) are left out when empty or nil, so the input of
// an unrestricted key is what it was before keys had entitlements, and
// policies test for them with object.get or a plain reference.
func (k *Key) value(t *terms) ast.Value {
	obj := ast.NewObject(
		t.str(fields.id, k.ID), t.str(fields.mode, k.Mode), t.str(fields.name, k.Name),
		t.boolean(fields.revoked, k.Revoked), t.boolean(fields.expired, k.Expired),
	)
	if len(k.Scopes) > 0 {
		obj.Insert(fields.scopes, t.term(t.strings(k.Scopes)))
	}
	if len(k.AllowedCIDRs) > 0 {
		obj.Insert(fields.cidrs, t.term(t.strings(k.AllowedCIDRs)))
	}
	if len(k.Meta) > 0 {
		kv := make([][2]*ast.Term, 0, len(k.Meta))
		for name, v := range k.Meta {
			kv = append(kv, [2]*ast.Term{t.term(ast.String(name)), t.term(ast.String(v))})
		}
		obj.Insert(fields.meta, t.term(ast.NewObject(kv...)))
	}
	addLimits(obj, k.Limits)
	if k.Remaining != nil {
		obj.Insert(fields.remaining, ast.IntNumberTerm(int(*k.Remaining)))
	}
	return obj
}

// strings is an array of strings.
func (t *terms) strings(ss []string) ast.Value {
	out := make([]*ast.Term, len(ss))
	for i, s := range ss {
		out[i] = t.term(ast.String(s))
	}
	return ast.NewArray(out...)
}
