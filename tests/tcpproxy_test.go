package tests

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// proxy is a TCP proxy the test can cut and restore, standing for a network
// between keygate and PostgreSQL (or Redis) that fails.
type proxy struct {
	t        *testing.T
	addr     string
	upstream string
	mu       sync.Mutex
	lis      net.Listener
	conns    []net.Conn
}

func startProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	p := &proxy{t: t, upstream: upstream}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = lis.Addr().String()
	p.serve(lis)
	t.Cleanup(p.Down)
	return p
}

func (p *proxy) serve(lis net.Listener) {
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
}

// Down refuses new connections and cuts every open one.
func (p *proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Up listens again on the same address.
func (p *proxy) Up() {
	p.t.Helper()
	var lis net.Listener
	Eventually(p.t, 10*time.Second, "the proxy port to be free again", func() bool {
		var err error
		lis, err = net.Listen("tcp", p.addr)
		return err == nil
	})
	p.serve(lis)
}
