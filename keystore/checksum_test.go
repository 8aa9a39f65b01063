package keystore

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// TestChecksumOfIsCRC32: the hand-rolled loop is CRC-32 (IEEE) as the
// standard library computes it, for keys and for strings of every length
// up to past any buffer, and it allocates nothing.
func TestChecksumOfIsCRC32(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		s := string(b)
		want := crc32.ChecksumIEEE(b)
		var out [checksumChars]byte
		for i := checksumChars - 1; i >= 0; i-- {
			out[i] = base62[want%62]
			want /= 62
		}
		if got := checksumOf(s); got != out {
			t.Fatalf("len %d: checksumOf %q, want %q", n, got[:], out[:])
		}
	}
	key := "kg_live_0123456789abcdefghijABCDEFGHIJ0123456789"
	if n := testing.AllocsPerRun(100, func() { _ = checksumOf(key) }); n != 0 {
		t.Errorf("checksumOf allocates %v times", n)
	}
}
