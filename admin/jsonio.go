package admin

import "net/http"

// Decode reads one bounded JSON object into v as the admin API does
// (unknown fields and trailing data refused; an empty body only when
// optional). Its errors are *Error with code INVALID_REQUEST. The customer
// API shares it.
func Decode(r *http.Request, v any, optional bool) error { return decode(r, v, optional) }

// WriteJSON answers v as JSON with status, never cached (answers may hold
// a key).
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }
