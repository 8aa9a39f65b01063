package policies

import (
	"fmt"
	"strings"
)

// A limit's key may name the request's key, its site and its account as
// "{key}", "{site}" and "{account}" (and the key's mode as "{mode}"):
// keygate fills them in when it charges the counter. The built-in policy
// writes its counter keys that way ("key:{key}:live"), so it never reads
// an id and the memo remembers one decision for every key with the same
// facts instead of one per key (memo.go). A key without placeholders is
// charged as written, as before.

// placeholders are the names CounterKey fills (placeholder gives each
// its value).
var placeholders = [...]string{"{key}", "{mode}", "{site}", "{account}"}

// placeholder is the value in gives the placeholder name, "" when it has
// none (no key, site or account).
func (in *Input) placeholder(name string) string {
	switch {
	case name == "{key}" && in.Key != nil:
		return in.Key.ID
	case name == "{mode}" && in.Key != nil:
		return in.Key.Mode
	case name == "{site}" && in.Site != nil:
		return in.Site.ID
	case name == "{account}" && in.Account != nil:
		return in.Account.ID
	}
	return ""
}

// CounterKey is l's counter key for the request in: its placeholders
// filled from in's key, site and account. A placeholder the request has no
// value for (a limit naming "{key}" on a request without a key) is an
// error, so the caller refuses the request rather than charge every such
// request one shared counter.
func (l Limit) CounterKey(in *Input) (string, error) {
	if !strings.Contains(l.Key, "{") {
		return l.Key, nil
	}
	var b strings.Builder
	b.Grow(len(l.Key) + 32)
	if err := l.fill(in, &b); err != nil {
		return "", err
	}
	return b.String(), nil
}

// CheckCounterKey is CounterKey's error alone, for a caller that charges
// nothing (`keygate check`, an Authorizer without a limiter): it builds no
// key.
func (l Limit) CheckCounterKey(in *Input) error {
	if !strings.Contains(l.Key, "{") {
		return nil
	}
	return l.fill(in, nil)
}

// fill writes l.Key with its placeholders filled into b (nil: only checks
// that it can). One pass: what a placeholder is filled with is never read
// again.
func (l Limit) fill(in *Input, b *strings.Builder) error {
	n := 0
	write := func(s string) {
		n += len(s)
		if b != nil {
			b.WriteString(s)
		}
	}
	rest := l.Key
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			write(rest)
			break
		}
		write(rest[:i])
		rest = rest[i:]
		filled := false
		for _, name := range placeholders {
			if !strings.HasPrefix(rest, name) {
				continue
			}
			v := in.placeholder(name)
			if v == "" {
				return fmt.Errorf("%w: limit key %q names %s, which this request does not have", ErrPolicy, l.Key, name)
			}
			if strings.ContainsAny(v, " \t") {
				return fmt.Errorf("%w: limit key %q would hold a space once filled in", ErrPolicy, l.Key)
			}
			write(v)
			rest, filled = rest[len(name):], true
			break
		}
		if !filled {
			write(rest[:1])
			rest = rest[1:]
		}
	}
	if n > maxLimitKey {
		return fmt.Errorf("%w: limit key %q is longer than %d bytes once filled in", ErrPolicy, l.Key, maxLimitKey)
	}
	return nil
}

// CounterKeys is ls with every key filled in for in (CounterKey): ls itself
// when no key has a placeholder.
func CounterKeys(ls []Limit, in *Input) ([]Limit, error) {
	var out []Limit
	for i, l := range ls {
		k, err := l.CounterKey(in)
		if err != nil {
			return nil, err
		}
		if k == l.Key && out == nil {
			continue
		}
		if out == nil {
			out = append(make([]Limit, 0, len(ls)), ls[:i]...)
		}
		l.Key = k
		out = append(out, l)
	}
	if out == nil {
		return ls, nil
	}
	return out, nil
}
