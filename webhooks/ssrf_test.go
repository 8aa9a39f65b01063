package webhooks

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestCheckURL(t *testing.T) {
	prod, dev := Destinations{}, Destinations{AllowHTTP: true}
	for _, tc := range []struct {
		url       string
		prod, dev bool // allowed?
	}{
		{"https://hooks.example.com/keygate", true, true},
		{"https://93.184.216.34/x", true, true},
		{"http://hooks.example.com/keygate", false, true},
		{"https://127.0.0.1/x", false, true},
		{"https://[::1]/x", false, true},
		{"https://localhost/x", false, true},
		{"https://app.localhost./x", false, true},
		{"https://10.1.2.3/x", false, true},
		{"https://192.168.0.1/x", false, true},
		{"https://169.254.169.254/latest/meta-data", false, true},
		{"https://100.64.0.1/x", false, true},
		{"https://[fe80::1]/x", false, true},
		{"https://[fd00::1]/x", false, true},
		{"https://[::ffff:127.0.0.1]/x", false, true},
		{"https://0.0.0.0/x", false, false},
		{"https://224.0.0.1/x", false, false},
		{"ftp://example.com/x", false, false},
		{"https://user:pw@example.com/x", false, false},
		{"https://example.com/x#frag", false, false},
		{"/relative", false, false},
		{"https:", false, false},
		{"javascript:alert(1)", false, false},
	} {
		if got := prod.CheckURL(tc.url) == nil; got != tc.prod {
			t.Errorf("production CheckURL(%q) allowed = %v, want %v", tc.url, got, tc.prod)
		}
		if got := dev.CheckURL(tc.url) == nil; got != tc.dev {
			t.Errorf("development CheckURL(%q) allowed = %v, want %v", tc.url, got, tc.dev)
		}
	}
	if err := prod.CheckURL("https://example.com/" + string(make([]byte, maxURLLen))); !errors.Is(err, ErrDestination) {
		t.Errorf("long URL: %v", err)
	}
}

// A host name is checked at dial time, after DNS: "localhost" resolving to
// 127.0.0.1 is refused by the production client even though the URL check
// could not know the address.
func TestClientRefusesInwardAddressesAtDial(t *testing.T) {
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, u := range []string{srv.URL, "http://localhost:" + port + "/"} {
		resp, err := Destinations{}.Client(5 * time.Second).Get(u)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("production client reached %s", u)
		}
		if !errors.Is(err, ErrDestination) {
			t.Fatalf("GET %s: %v, want ErrDestination", u, err)
		}
	}
	if hits != 0 {
		t.Fatalf("receiver hit %d times", hits)
	}
	resp, err := Destinations{AllowHTTP: true}.Client(5 * time.Second).Get(srv.URL)
	if err != nil {
		t.Fatalf("development client: %v", err)
	}
	resp.Body.Close()
	if hits != 1 {
		t.Fatalf("receiver hit %d times, want 1", hits)
	}
}

func TestDialControl(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:80", "[::1]:443", "10.0.0.1:443", "169.254.169.254:80", "[::ffff:10.0.0.1]:443"} {
		if _, err := (Destinations{}).dialContext(context.Background(), "tcp", addr); !errors.Is(err, ErrDestination) {
			t.Errorf("dial %s: %v, want ErrDestination", addr, err)
		}
	}
	if err := (Destinations{}).checkAddr(netip.MustParseAddr("8.8.8.8")); err != nil {
		t.Errorf("public address refused: %v", err)
	}
}

// dialContext is the checked dialer alone.
func (d Destinations) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return (&net.Dialer{Control: d.control}).DialContext(ctx, network, addr)
}
