package customer

import "encoding/json"

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

func bodyShape(documents map[string]any) string {
	keygate, _ := documents["keygate"].(map[string]any)
	config, _ := keygate["config"].(map[string]any)
	shape, _ := config["body_shape"].(string)
	return shape
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
