package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/policies"
)

// Vocabulary is what the running policy's data accepts for an account's
// plan and for limit overrides, so that a typo is refused when it is
// written rather than turning into PLAN_REQUIRED on every request later.
type Vocabulary struct {
	// Plans are the plans of data.keygate.config.plans; empty when the
	// policy names none (then any plan is accepted).
	Plans []string
	// Limits are the override names of data.keygate.config.limits
	// (overridable, else the numeric names the plans set); empty when the
	// policy names none.
	Limits []string
}

// FieldError is a value the policy or the store does not accept; Field is
// its JSON name ("plan", "limits.speed").
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// VocabularyOf reads the vocabulary of a compiled policy (nil: none).
func VocabularyOf(p *policies.Policy) Vocabulary {
	if p == nil || p.Bundle == nil {
		return Vocabulary{}
	}
	config := object(object(p.Bundle.Documents["keygate"])["config"])
	v := Vocabulary{Plans: keysOf(object(config["plans"]))}
	limits := object(config["limits"])
	if names, ok := limits["overridable"].([]any); ok {
		for _, n := range names {
			if s, ok := n.(string); ok {
				v.Limits = append(v.Limits, s)
			}
		}
	} else {
		seen := map[string]bool{}
		for _, plan := range object(limits["plans"]) {
			for name, val := range object(plan) {
				if isNumber(val) && !seen[name] {
					seen[name] = true
					v.Limits = append(v.Limits, name)
				}
			}
		}
	}
	sort.Strings(v.Limits)
	return v
}

func object(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// keysOf lists the keys whose value is set (a layer removes a plan with null).
func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		if v != nil {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func isNumber(v any) bool {
	switch v.(type) {
	case int, int64, float64, json.Number:
		return true
	}
	return false
}

// CheckPlan refuses a plan the policy does not define.
func (v Vocabulary) CheckPlan(plan string) error {
	if len(v.Plans) == 0 || contains(v.Plans, plan) {
		return nil
	}
	return &FieldError{Field: "plan", Message: fmt.Sprintf("unknown plan %q; the policy's plans are %s", plan, strings.Join(v.Plans, ", "))}
}

// CheckStatus refuses an account status keygate does not know.
func CheckStatus(status string) error {
	if _, err := keystore.ParseStatus(status); err == nil {
		return nil
	}
	return &FieldError{Field: "status", Message: fmt.Sprintf("unknown account status %q; valid statuses are %s", status, strings.Join(Statuses(), ", "))}
}

// Statuses are the account statuses, in the order DESIGN.md lists them.
func Statuses() []string {
	return []string{string(keystore.StatusActive), string(keystore.StatusTrialing), string(keystore.StatusTrialExpired), string(keystore.StatusInactive)}
}

// CheckLimits refuses override names the policy does not read.
func (v Vocabulary) CheckLimits(l keystore.Limits) error {
	names := make([]string, 0, len(l))
	for name := range l {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if len(v.Limits) > 0 && !contains(v.Limits, name) {
			return &FieldError{Field: "limits." + name,
				Message: fmt.Sprintf("unknown limit %q; the policy's limits are %s", name, strings.Join(v.Limits, ", "))}
		}
	}
	if err := l.Validate(); err != nil {
		return &FieldError{Field: "limits", Message: trim(err)}
	}
	return nil
}

func contains(list []string, s string) bool {
	i := sort.SearchStrings(list, s)
	return i < len(list) && list[i] == s
}

// vocabulary is the running policy's (empty without one).
func (h *Handler) vocabulary() Vocabulary {
	if h.Policy == nil {
		return Vocabulary{}
	}
	return VocabularyOf(h.Policy.Current())
}

// checkAccount validates an account body's plan and status.
func (h *Handler) checkAccount(b accountBody) error {
	if b.Plan != nil {
		if err := h.vocabulary().CheckPlan(*b.Plan); err != nil {
			return err
		}
	}
	if b.Status != nil {
		return CheckStatus(*b.Status)
	}
	return nil
}

// invalidField is an INVALID_REQUEST about one field.
func invalidField(field, format string, args ...any) error {
	return &Error{Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// jsonError names the field a body got wrong, in JSON terms rather than
// Go's ("plan" must be a string, not "json: cannot unmarshal number into
// Go struct field accountBody.plan of type string").
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		f := strings.TrimPrefix(te.Field, "entitlementBody.") // embedded in keyBody
		return invalidField(f, "%q must be %s, not %s", f, jsonType(te.Type), te.Value)
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return invalidField(strings.Trim(msg, `"`), "unknown field %s", msg)
	}
	return invalid("malformed JSON: %v", err)
}

// jsonType names a Go type the way a JSON client knows it.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		if t == reflect.TypeOf(time.Time{}) {
			return "an RFC 3339 time string"
		}
		return "an object"
	}
	return "another type"
}

// RotateAll is the rotation mode that revokes the keys of every mode.
const RotateAll = "all"

// Rotation reads a rotation's mode ("live", "test" or "all"): the new
// key's spec and the mode of the keys it revokes ("" for every mode; the
// new key is then live).
func Rotation(site, mode, name string) (keystore.KeySpec, keystore.Mode, error) {
	if mode == RotateAll {
		return keystore.KeySpec{SiteID: site, Mode: keystore.ModeLive, Name: name}, "", nil
	}
	m, err := keystore.ParseMode(mode)
	if err != nil {
		return keystore.KeySpec{}, "", &FieldError{Field: "mode", Message: fmt.Sprintf("unknown rotation mode %q; want live, test or all", mode)}
	}
	return keystore.KeySpec{SiteID: site, Mode: m, Name: name}, m, nil
}

// fieldOf is the request field an error is about ("" for none).
func fieldOf(err error) string {
	var e *Error
	var fe *FieldError
	switch {
	case errors.As(err, &e):
		return e.Field
	case errors.As(err, &fe):
		return fe.Field
	}
	return ""
}
