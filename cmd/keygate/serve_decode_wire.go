package main

import (
	"encoding/binary"
	"math"
	"math/bits"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// The wire-format pieces decodeCheckRequest is built from. Each decodes
// one field's value and returns the bytes it took, or -1 for "not handled
// here": the whole request then goes to proto.Unmarshal.

// fieldFunc decodes the value of field num (wire type typ) at the start of
// b and returns the bytes it took, or -1: not handled here.
type fieldFunc func(num protowire.Number, typ protowire.Type, b []byte) int

// fields runs f on every field of the encoded message b.
func fields(b []byte, f fieldFunc) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if n = f(num, typ, b); n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// countField is how many times field num occurs length-delimited in the
// encoded message b (as far as b is well-formed: the decode that follows
// finds the rest). Only that wire type can decode as a message or a map
// entry: an occurrence of another type is refused, and must not make the
// caller reserve memory for it.
func countField(b []byte, num protowire.Number) int {
	count := 0
	for len(b) > 0 {
		n, typ, tag := protowire.ConsumeTag(b)
		if tag < 0 {
			break
		}
		v := protowire.ConsumeFieldValue(n, typ, b[tag:])
		if v < 0 {
			break
		}
		if n == num && typ == protowire.BytesType {
			count++
		}
		b = b[tag+v:]
	}
	return count
}

// message decodes a length-delimited sub-message into dst, merging into
// what an earlier occurrence of the field decoded (proto's rule).
func message[T any](typ protowire.Type, b []byte, dst *T, decode func([]byte, *T) bool) int {
	if typ != protowire.BytesType {
		return -1
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 || !decode(v, dst) {
		return -1
	}
	return n
}

// str decodes a proto3 string: valid UTF-8, or proto.Unmarshal's error.
func str(typ protowire.Type, b []byte, dst *string) int { return text(typ, b, dst, unknownTail) }

// text is str for a string in a message whose bytes from its first
// non-ASCII byte to its end are tail long (asciiTail): a string that ends
// before them is ASCII, and so valid UTF-8. One scan of a message instead
// of a check of each of its strings, which for a request's many short
// header names and values was ~13% of the decoder's instructions; a
// string past the first non-ASCII byte (after Envoy's size field, say) is
// checked as before.
func text(typ protowire.Type, b []byte, dst *string, tail int) int {
	if typ != protowire.BytesType {
		return -1
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 || !inASCII(b, n, tail) && !utf8.Valid(v) {
		return -1
	}
	*dst = intern(v)
	return n
}

// unknownTail is the tail of a message not scanned: nothing in it is
// known to be ASCII.
const unknownTail = math.MaxInt

// inASCII reports whether the n bytes at the start of b (what is left of
// a message whose non-ASCII tail is tail long) end before that tail.
func inASCII(b []byte, n, tail int) bool { return len(b)-n >= tail }

// asciiTail is how many bytes of b there are from its first byte at or
// above 0x80 to its end (0: b is ASCII). Invalid UTF-8 always has such a
// byte, so a string before it is valid.
func asciiTail(b []byte) int {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if w := binary.LittleEndian.Uint64(b[i:]) & 0x8080808080808080; w != 0 {
			return len(b) - i - bits.TrailingZeros64(w)/8
		}
	}
	for ; i < len(b); i++ {
		if b[i] >= utf8.RuneSelf {
			return len(b) - i
		}
	}
	return 0
}

// intern is string(v), without an allocation for the header names and
// values that every request repeats (a map lookup by string(v) does not
// copy v).
func intern(v []byte) string {
	if s, ok := interned[string(v)]; ok {
		return s
	}
	return string(v)
}

var interned = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{":authority", ":method", ":path", ":scheme", "accept", "accept-encoding",
		"authorization", "content-length", "content-type", "cookie", "origin", "referer", "user-agent",
		"x-api-key", "x-envoy-expected-rq-timeout-ms", "x-envoy-internal", "x-forwarded-for",
		"x-forwarded-proto", "x-request-id", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
		"http", "https", "HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3", "application/json", "*/*", "gzip"} {
		m[s] = s
	}
	return m
}()

// byteString decodes a bytes field: a copy, nil when empty, as
// proto.Unmarshal leaves a proto3 bytes field (proto.Equal does not tell
// nil from empty; a reader testing for nil would).
func byteString(typ protowire.Type, b []byte, dst *[]byte) int {
	if typ != protowire.BytesType {
		return -1
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return -1
	}
	*dst = append([]byte(nil), v...)
	return n
}

// varint decodes a varint-typed field's raw value; the caller converts it
// as protobuf-go does (truncating to 32 bits, v != 0 for bool).
func varint(typ protowire.Type, b []byte, dst *uint64) int {
	if typ != protowire.VarintType {
		return -1
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return -1
	}
	*dst = v
	return n
}

// stringMapEntry decodes one map<string, string> entry into *dst; tail
// as for text. An entry with a field other than key and value falls back
// (protobuf-go skips those, but its rules for them are not worth copying).
func stringMapEntry(typ protowire.Type, b []byte, dst *map[string]string, tail int) int {
	if typ != protowire.BytesType {
		return -1
	}
	e, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return -1
	}
	inner := unknownTail
	if inASCII(b, n, tail) {
		inner = 0 // the whole entry is ASCII
	}
	var k, v string
	ok := fields(e, func(num protowire.Number, typ protowire.Type, b []byte) int {
		switch num {
		case 1:
			return text(typ, b, &k, inner)
		case 2:
			return text(typ, b, &v, inner)
		}
		return -1
	})
	if !ok {
		return -1
	}
	if *dst == nil {
		*dst = map[string]string{}
	}
	(*dst)[k] = v
	return n
}
