package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

func TestBufferConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = b.Write([]byte("ab"))
				_, _ = b.WriteString("c")
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	s := b.String()
	if len(s) != 8*100*3 || strings.Count(s, "a") != 800 || strings.Count(s, "c") != 800 {
		t.Fatalf("lost writes: %d bytes", len(s))
	}
}
