package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
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

// limitQuery reads ?limit (def when absent), which must be 1 to most.
func limitQuery(r *http.Request, def, most int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		return 0, invalidField("limit", `"limit" must be between 1 and %d`, most)
	}
	return n, nil
}

// pageQuery reads ?limit and ?after.
func pageQuery(r *http.Request) (after string, limit int, err error) {
	if limit, err = limitQuery(r, defaultLimit, maxLimit); err != nil {
		return "", 0, err
	}
	after = r.URL.Query().Get("after")
	if len(after) > 64 {
		return "", 0, invalidField("after", `"after" is not an id (at most 64 characters)`)
	}
	return after, limit, nil
}

// next is the cursor after a page of n items of at most limit.
func next(n, limit int, last func() string) string {
	if n == limit && n > 0 {
		return last()
	}
	return ""
}

// paged serves a listing cursored by id (?limit, ?after): fetch reads one
// page, id names an item for the next cursor, wrap makes the answer (whose
// list is never null in JSON).
func paged[T any](r *http.Request, fetch func(after string, limit int) ([]T, error), id func(T) string, wrap func(list []T, next string) any) (int, any, error) {
	after, limit, err := pageQuery(r)
	if err != nil {
		return 0, nil, err
	}
	list, err := fetch(after, limit)
	if err != nil {
		return 0, nil, err
	}
	if list == nil {
		list = []T{}
	}
	return http.StatusOK, wrap(list, next(len(list), limit, func() string { return id(list[len(list)-1]) })), nil
}
