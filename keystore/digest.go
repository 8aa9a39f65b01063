package keystore

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"sync"
	"unsafe"
)

// Digest is the HMAC-SHA256 of a key under one pepper, hex encoded. It is the
// only form in which a key reaches the store or the cache.
type Digest string

// Short is a digest prefix that is safe to log.
func (d Digest) Short() string {
	if len(d) > 12 {
		return string(d[:12])
	}
	return string(d)
}

// noPepper keys the HMAC when a deployment sets no pepper, so digests are
// still domain-separated from a bare SHA-256 of the key.
const noPepper = "keygate-digest-v1"

// Digester turns raw keys into digests. The first pepper digests new keys;
// older peppers still find keys created before a pepper rotation.
//
// A fast keyed hash is the right tool here: keys carry ≥160 random bits, so
// a slow KDF buys nothing and would cost every cache miss.
type Digester struct {
	peppers [][]byte
	// macs holds one sync.Pool of keyed HMACs per pepper: building an HMAC
	// costs more than hashing a key with it.
	macs []sync.Pool
	// seals encrypt token signing secrets (see WithSealSecret).
	seals [][]byte
}

// NewDigester takes the peppers newest first. With none, a fixed
// domain-separation key is used: safe, but a stolen database then allows
// offline checks of guessed keys, which a pepper kept out of the database
// prevents.
func NewDigester(peppers ...[]byte) (*Digester, error) {
	for _, p := range peppers {
		if len(p) < 16 {
			return nil, errors.New("keystore: a pepper needs at least 16 bytes")
		}
	}
	if len(peppers) == 0 {
		peppers = [][]byte{[]byte(noPepper)}
	}
	d := &Digester{peppers: peppers, macs: make([]sync.Pool, len(peppers))}
	for i, p := range peppers {
		d.macs[i].New = func() any { return &macState{mac: hmac.New(sha256.New, p)} }
	}
	return d, nil
}

// Primary is the digest new keys are stored under and the cache is keyed by.
func (d *Digester) Primary(raw string) Digest { return d.digest(0, raw) }

// All returns the digest under every pepper, primary first.
func (d *Digester) All(raw string) []Digest {
	return d.AppendAll(make([]Digest, 0, len(d.peppers)), raw)
}

// AppendAll is All appended to dst, for a caller that keeps the digests in
// memory it already has (the authorizer's per-request state).
func (d *Digester) AppendAll(dst []Digest, raw string) []Digest {
	for i := range d.peppers {
		dst = append(dst, d.digest(i, raw))
	}
	return dst
}

// macState is a keyed HMAC with the buffers one digest needs: writing a
// string to a hash.Hash, and summing into a slice, would each allocate
// (the interface hides that they do not keep the memory).
type macState struct {
	mac hash.Hash
	in  []byte
	sum [sha256.Size]byte
}

// DigestLen is a digest's length (hex of a SHA-256).
const DigestLen = 2 * sha256.Size

// AppendAllIn is AppendAll with the primary digest's text written into
// buf, memory the caller allocated anyway (the authorizer's per-request
// state), which the digest then is: buf must never be written again, and
// whoever keeps the digest past the request keeps buf's memory unless it
// copies it (Cache.Key does). Older peppers' digests are allocated.
func (d *Digester) AppendAllIn(dst []Digest, buf *[DigestLen]byte, raw string) []Digest {
	d.sum(0, raw, buf)
	dst = append(dst, Digest(unsafe.String(&buf[0], len(buf))))
	for i := 1; i < len(d.peppers); i++ {
		dst = append(dst, d.digest(i, raw))
	}
	return dst
}

func (d *Digester) digest(i int, raw string) Digest {
	var buf [DigestLen]byte
	d.sum(i, raw, &buf)
	return Digest(buf[:])
}

// sum writes the hex digest of raw under pepper i into out.
func (d *Digester) sum(i int, raw string, out *[DigestLen]byte) {
	m := d.macs[i].Get().(*macState)
	m.mac.Reset()
	m.in = append(m.in[:0], raw...)
	m.mac.Write(m.in) //nolint:errcheck // a hash never fails to write
	hex.Encode(out[:], m.mac.Sum(m.sum[:0]))
	if cap(m.in) > maxPooledKey {
		m.in = nil // an odd huge credential is not kept alive by the pool
	}
	clear(m.in[:cap(m.in)]) // nor is any key's text
	d.macs[i].Put(m)
}

// maxPooledKey bounds the key buffer a pooled macState keeps.
const maxPooledKey = 1 << 10
