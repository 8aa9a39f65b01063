package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/keystore"
)

// endpoint does the work of one route and returns the status and the JSON
// answer, or an error that errorStatus maps.
type endpoint func(ctx context.Context, r *http.Request) (int, any, error)

func (h *Handler) handle(fn endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		timeout := h.Timeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		status, body, err := fn(ctx, r)
		if err != nil {
			status, code, msg := errorStatus(err)
			if status == http.StatusNotFound {
				msg = notFoundMessage(r, msg)
			}
			if status >= 500 {
				h.Log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeJSON(w, status, Error{Code: code, Message: msg, Field: fieldOf(err)})
			return
		}
		h.Log.Info("admin", "method", r.Method, "path", r.URL.Path, "status", status)
		writeJSON(w, status, body)
	}
}

// errorStatus maps keystore errors to the API's status and code. Store
// messages carry no secrets (keys are only ever digests there).
func errorStatus(err error) (int, string, string) {
	var e *Error
	var fe *FieldError
	switch {
	case errors.As(err, &e):
		return http.StatusBadRequest, e.Code, e.Message
	case errors.As(err, &fe):
		return http.StatusBadRequest, CodeInvalid, fe.Error()
	case errors.Is(err, keystore.ErrInvalid):
		return http.StatusBadRequest, CodeInvalid, trim(err)
	case errors.Is(err, keystore.ErrNotFound):
		return http.StatusNotFound, CodeNotFound, trim(err)
	case errors.Is(err, keystore.ErrConflict):
		return http.StatusConflict, CodeConflict, trim(err)
	case errors.Is(err, keystore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, CodeUnavailable, "the store is unreachable; retry later"
	case errors.Is(err, keystore.ErrNoSealSecret):
		return http.StatusServiceUnavailable, CodeUnavailable,
			"no secret outside the database to encrypt signing secrets: set KEYGATE_TOKEN_SECRET (or KEYGATE_PEPPER) on the server"
	}
	return http.StatusInternalServerError, CodeInternal, "internal error"
}

// trim drops the "keystore: " markers that help logs but not API users.
func trim(err error) string { return strings.ReplaceAll(err.Error(), "keystore: ", "") }

func invalid(format string, args ...any) error {
	return &Error{Code: CodeInvalid, Message: fmt.Sprintf(format, args...)}
}

// withBody is an endpoint whose request body is one JSON object of type B
// (bounded, no unknown fields; see decode): fn gets it decoded.
func withBody[B any](fn func(ctx context.Context, r *http.Request, b B) (int, any, error)) endpoint {
	return func(ctx context.Context, r *http.Request) (int, any, error) {
		var b B
		if err := decode(r, &b, false); err != nil {
			return 0, nil, err
		}
		return fn(ctx, r, b)
	}
}
