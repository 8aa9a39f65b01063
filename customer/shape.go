package customer

import (
	"encoding/json"
	"strings"

	"github.com/keygate/keygate/policies"
)

// shapeDenial gives d the body and media type the running policy gives
// Check's denials: shapeBody's shapes, and RFC 9457 problem details
// (body_shape problem, application/problem+json) as
// policies/default/response.rego renders them; config.content_type, when
// set, names the media type.
func shapeDenial(documents map[string]any, d *policies.Decision, requestID string) {
	if configString(documents, "body_shape") == "problem" {
		typ := "about:blank"
		if base := configString(documents, "problem_type_base"); base != "" {
			typ = base + strings.ReplaceAll(strings.ToLower(d.Code), "_", "-")
		}
		d.Body, _ = json.Marshal(map[string]any{"type": typ, "title": d.Message, "status": d.Status, "detail": d.Message})
		d.ContentType = "application/problem+json"
	} else {
		d.Body = shapeBody(documents, d.Code, d.Message, requestID)
	}
	if ct := configString(documents, "content_type"); ct != "" {
		d.ContentType = ct
	}
}

// shapeBody renders a refusal in the body shape the running policy gives
// Check's denials (data.keygate.config.body_shape, see
// policies/default/response.rego): code_message → {"code","message"},
// message → {"message"}, error_object → {"error": {"code","message"
// [,"request_id"]}}. No policy or another shape: code_message. So a
// dashboard parses the customer API's errors as it parses the API's.
func shapeBody(documents map[string]any, code, message, requestID string) []byte {
	var v any = map[string]string{"code": code, "message": message}
	switch bodyShape(documents) {
	case "message":
		v = map[string]string{"message": message}
	case "error_object":
		e := map[string]string{"code": code, "message": message}
		if requestID != "" && len(requestID) <= 128 {
			e["request_id"] = requestID
		}
		v = map[string]any{"error": e}
	}
	b, _ := json.Marshal(v) // maps of strings always marshal
	return b
}

func bodyShape(documents map[string]any) string { return configString(documents, "body_shape") }

// configString is one string of the policy's data.keygate.config.
func configString(documents map[string]any, name string) string {
	keygate, _ := documents["keygate"].(map[string]any)
	config, _ := keygate["config"].(map[string]any)
	v, _ := config[name].(string)
	return v
}

// documents is the running policy's data (nil without a policy).
func (h *Handler) documents() map[string]any {
	if h.Policy == nil {
		return nil
	}
	if p := h.Policy.Current(); p != nil && p.Bundle != nil {
		return p.Bundle.Documents
	}
	return nil
}
