package admin

import (
	"net/http"
	"strconv"
)

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
