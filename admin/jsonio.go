package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// Decode reads one bounded JSON object into v as the admin API does
// (unknown fields and trailing data refused; an empty body only when
// optional). Its errors are *Error with code INVALID_REQUEST. The customer
// API shares it.
func Decode(r *http.Request, v any, optional bool) error { return decode(r, v, optional) }

// WriteJSON answers v as JSON with status, never cached (answers may hold
// a key).
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// decode reads one bounded JSON object, rejecting unknown fields and
// trailing data. An empty body is allowed only when optional.
func decode(r *http.Request, v any, optional bool) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return invalid("reading the body: %v", err)
	}
	if len(body) > maxBody {
		return invalid("body larger than %d bytes", maxBody)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if optional {
			return nil
		}
		return invalid("a JSON body is required")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return invalid("malformed JSON: data after the object")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // answers may hold a key
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, Error{Code: code, Message: msg})
}
