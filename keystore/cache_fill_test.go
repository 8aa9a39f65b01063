package keystore

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// goroutineID is the id runtime.Stack names the calling goroutine by.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := bytes.Cut(bytes.TrimPrefix(buf, []byte("goroutine ")), []byte(" "))
	return string(id)
}

// readerLoader records the goroutine every key read ran on, and the
// digests it was asked for (kept, as a fill may keep them).
type readerLoader struct {
	storeLikeLoader
	mu      sync.Mutex
	readers []string
	kept    []Digest
}

func (l *readerLoader) LookupKey(ctx context.Context, digests []Digest) (KeyFacts, error) {
	l.mu.Lock()
	l.readers = append(l.readers, goroutineID())
	l.kept = append(l.kept, digests...)
	l.mu.Unlock()
	return l.storeLikeLoader.LookupKey(ctx, digests)
}

// Misses one after another read on one goroutine the cache keeps, not on
// the caller's and not on a new one each (whose stack a SQLite read grows
// by copying, every time).
func TestFillReusesReader(t *testing.T) {
	l := &readerLoader{storeLikeLoader: storeLikeLoader{sites: 10}}
	c, err := NewCache(l, CacheConfig{MaxEntries: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		if _, err := c.Key(context.Background(), []Digest{testDigest(i)}); err != nil {
			t.Fatal(err)
		}
	}
	caller := goroutineID()
	if len(l.readers) != 3 {
		t.Fatalf("%d reads, want 3", len(l.readers))
	}
	for i, g := range l.readers {
		if g == caller || g != l.readers[0] {
			t.Errorf("read %d on goroutine %s (caller %s, first read %s), want the first read's, not the caller's", i, g, caller, l.readers[0])
		}
	}
}

// Concurrent misses of one entry share one read; a reader kept idle ends
// when the cache closes, and a read after that still answers.
func TestFillsShareAndClose(t *testing.T) {
	var f fills
	release := make(chan struct{})
	reads := 0
	load := func() (entry, error) {
		<-release
		reads++
		return entry{rec: "x"}, nil
	}
	k := fillKey{"k:1", 1}
	a, b := f.do(k, load), f.do(k, load)
	if a != b {
		t.Fatal("a second miss of one entry started a read of its own")
	}
	close(release)
	<-a.done
	if reads != 1 || a.e.rec != "x" {
		t.Fatalf("reads %d, entry %+v", reads, a.e)
	}
	f.mu.Lock()
	idle := len(f.idle)
	f.mu.Unlock()
	for idle == 0 { // the reader puts itself back after done
		runtime.Gosched()
		f.mu.Lock()
		idle = len(f.idle)
		f.mu.Unlock()
	}
	w := f.idle[0]
	f.close()
	if _, open := <-w; open {
		t.Error("an idle reader's channel stayed open after close")
	}
	c := f.do(fillKey{"k:2", 1}, load)
	<-c.done
	if c.err != nil || reads != 2 {
		t.Errorf("a read after close: %v, reads %d", c.err, reads)
	}
}

// A load that ends its goroutine (runtime.Goexit, as t.FailNow does in a
// loader) still wakes the read's callers, with ErrUnavailable, and the
// next miss of the entry reads again instead of joining the dead read.
func TestFillGoexitWakesCallers(t *testing.T) {
	var f fills
	defer f.close()
	exited := false
	load := func() (entry, error) {
		if !exited {
			exited = true
			runtime.Goexit()
		}
		return entry{rec: "x"}, nil
	}
	k := fillKey{"k:1", 1}
	wait := func(c *fillCall) {
		t.Helper()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second): // a deadlock, not a speed check
			t.Fatal("the read's callers were left waiting")
		}
	}
	c := f.do(k, load)
	wait(c)
	if !errors.Is(c.err, ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", c.err)
	}
	c = f.do(k, load)
	wait(c)
	if c.err != nil || c.e.rec != "x" {
		t.Fatalf("second read: %+v, %v", c.e, c.err)
	}
}

// A miss hands the load copies of the digests: the authorizer's are in
// its per-request memory (Digester.AppendAllIn), which a kept digest
// (the fill's, the entry's key, the key filter's) would otherwise keep
// whole, for as long as the cache holds the key.
func TestKeyMissCopiesDigests(t *testing.T) {
	l := &readerLoader{storeLikeLoader: storeLikeLoader{sites: 10}}
	c := newTestCache(t, l, CacheConfig{})
	d, err := NewDigester([]byte("pepper-0123456789abcdef"), []byte("pepper-older-0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	var buf [DigestLen]byte
	var arr [2]Digest
	digests := d.AppendAllIn(arr[:0], &buf, "kg_live_test")
	if unsafe.StringData(string(digests[0])) != &buf[0] {
		t.Fatal("AppendAllIn did not write the primary digest into buf")
	}
	if digests[0] != d.Primary("kg_live_test") || len(digests) != 2 {
		t.Fatalf("AppendAllIn = %q, want the primary digest and an older pepper's", digests)
	}
	if _, err := c.Key(context.Background(), digests); err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.kept) != 2 {
		t.Fatalf("the load was asked for %d digests, want 2", len(l.kept))
	}
	for i, k := range l.kept {
		if k != digests[i] {
			t.Errorf("digest %d: the load got %q, want %q", i, k, digests[i])
		}
		if unsafe.StringData(string(k)) == unsafe.StringData(string(digests[i])) {
			t.Errorf("digest %d: the load got the caller's memory, not a copy", i)
		}
	}
}
