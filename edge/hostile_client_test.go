package edge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/edge/certs"
	"github.com/selfcdn/cdn/internal/testwait"
)

// rawExchange sends req on a new connection to addr and returns the
// status line of the answer ("" if the connection closed without one)
// and how long it took.
func rawExchange(t *testing.T, addr, req string) (string, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), time.Since(start)
}

// TestHostileClients: malformed requests get their status at once, on
// HTTP/1.1 (raw) and where it applies on h2c (issue 20).
func TestHostileClients(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	e := startEdge(t, o.URL, nil, nil)
	addr := strings.TrimPrefix(e.URL, "http://")
	long := "/" + strings.Repeat("a", 100_000)
	medium := "/" + strings.Repeat("b", 20_000)
	tests := []struct {
		name, req, want string
	}{
		{name: "CONNECT", req: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", want: "405"},
		{name: "header name not a token", req: "GET / HTTP/1.1\r\nHost: a.test\r\nBad(Name): x\r\n\r\n", want: "400"},
		{name: "Host with userinfo", req: "GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n", want: "400"},
		{name: "Host port 0", req: "GET / HTTP/1.1\r\nHost: a.test:0\r\n\r\n", want: "400"},
		{name: "Host port past 65535", req: "GET / HTTP/1.1\r\nHost: a.test:65536\r\n\r\n", want: "400"},
		{name: "Host port fine", req: "GET / HTTP/1.1\r\nHost: a.test:8080\r\n\r\n", want: "200"},
		{name: "bare LF line endings", req: "GET / HTTP/1.1\nHost: a.test\n\n", want: "any"},
		{name: "100 KB URL", req: "GET " + long + " HTTP/1.1\r\nHost: a.test\r\n\r\n", want: "414"},
		{name: "20 KB URL", req: "GET " + medium + " HTTP/1.1\r\nHost: a.test\r\n\r\n", want: "414"},
		{name: "70 KB of header is still 431", req: "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: " + strings.Repeat("c", 70_000) + "\r\n\r\n", want: "431"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, took := rawExchange(t, addr, tt.req)
			if took > 2*time.Second {
				t.Errorf("answered after %s, want at once", took)
			}
			if tt.want == "any" {
				if line == "" || (!strings.Contains(line, " 200 ") && !strings.Contains(line, " 400 ")) {
					t.Errorf("got %q, want a 200 or a 400", line)
				}
				return
			}
			if !strings.HasPrefix(line, "HTTP/1.1 "+tt.want+" ") {
				t.Errorf("got %q, want %s", line, tt.want)
			}
		})
	}
	// The same checks on h2c, where the request can be made.
	for _, tt := range []struct {
		name, method, host, path string
		want                     int
	}{
		{name: "h2c CONNECT", method: "CONNECT", host: "a.test:443", want: 405},
		{name: "h2c Host port past 65535", method: "GET", host: "a.test:99999", path: "/", want: 400},
		{name: "h2c 20 KB path", method: "GET", host: "a.test", path: medium, want: 414},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.URL+tt.path, nil)
			req.Host = tt.host
			if tt.method == "CONNECT" {
				req.URL.Path = "" // CONNECT names only an authority (req.Host)
			}
			res, err := h2cClient(t).Transport.RoundTrip(req)
			if err != nil {
				t.Fatalf("round trip: %v", err)
			}
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Errorf("%s: %d, want %d", tt.name, res.StatusCode, tt.want)
			}
		})
	}
}

// TestSlowHeadCutOff: a client trickling its request head (a byte every
// 100 ms, for ever) is cut off at read_header_timeout, on HTTP/1.1 and
// in the HTTP/2 preface; not after a minute.
func TestSlowHeadCutOff(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	e := startEdge(t, o.URL, nil, func(c *Config) { c.ReadHeaderTimeout = time.Second })
	addr := strings.TrimPrefix(e.URL, "http://")
	for _, tt := range []struct{ name, head string }{
		{name: "HTTP/1.1 head", head: "GET / HTTP/1.1\r\nHost: a.test\r\n" + strings.Repeat("X-Slow: 1\r\n", 100)},
		{name: "HTTP/1.1 first request line", head: "GET /" + strings.Repeat("s", 200)},
		{name: "HTTP/2 preface", head: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			cut := make(chan time.Duration, 1)
			go func() {
				io.Copy(io.Discard, c) // returns when the edge closes
				cut <- time.Since(start)
			}()
			for i := 0; ; i = (i + 1) % len(tt.head) {
				select {
				case took := <-cut:
					t.Logf("cut off after %s", took.Round(10*time.Millisecond))
					if took > 3*time.Second {
						t.Errorf("cut off after %s, want about read_header_timeout (1s)", took)
					}
					return
				case <-time.After(100 * time.Millisecond):
				}
				if time.Since(start) > 8*time.Second {
					t.Fatal("still connected after 8s")
				}
				c.Write([]byte{tt.head[i]})
			}
		})
	}
}

// TestTLSHandshakeBounded: a TLS client that connects and never finishes
// its handshake is cut off at tls.handshake_timeout.
func TestTLSHandshakeBounded(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	e := startTLSEdge(t, o.URL, func(c *Config) { c.TLS.HandshakeTimeout = time.Second })
	c, err := net.Dial("tcp", e.httpsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello, then nothing
	c.SetReadDeadline(time.Now().Add(8 * time.Second))
	io.Copy(io.Discard, c)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("half a handshake held the connection %s, want about 1s", took)
	}
}

// TestNoDomainFronting: a request whose Host is another site than the
// one the TLS connection was made for gets 421, on HTTP/1.1, HTTP/2 and
// HTTP/3; its own site's hosts are served.
func TestNoDomainFronting(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("hello " + r.Host))
	})
	e := startTLSEdge(t, o.URL, func(c *Config) {
		c.Sites = append(c.Sites, SiteConfig{Name: "other", Hosts: []string{"other.test"}, Origin: o.URL, TLS: certs.Dev})
	})
	for _, proto := range []string{"h1", "h2", "h3"} {
		t.Run(proto, func(t *testing.T) {
			c := e.client(t, proto)
			for _, tt := range []struct {
				host string
				want int
			}{
				{host: "www.example.test", want: 200},
				{host: "a.example.test", want: 200}, // same site, another of its names
				{host: "other.test", want: 421},
			} {
				// Twice: the second would be a hit on the HTTP/1.1 fast path.
				for range 2 {
					req, _ := http.NewRequest("GET", e.url("www.example.test", "/front"), nil)
					req.Host = tt.host
					res, err := c.Do(req)
					if err != nil {
						t.Fatalf("SNI www.example.test, Host %s: %v", tt.host, err)
					}
					res.Body.Close()
					if res.StatusCode != tt.want {
						t.Errorf("SNI www.example.test, Host %s: %d, want %d", tt.host, res.StatusCode, tt.want)
					}
				}
			}
		})
	}
}

// TestHostileClientsLeakNothing: after many malformed requests, slow
// heads and hostile-origin fetches, the edge's goroutines and open
// descriptors come back to where they were.
func TestHostileClientsLeakNothing(t *testing.T) {
	o := newRawOrigin(t, func(w *bufio.Writer, path string) {
		if path == "/big" {
			w.WriteString("HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("x", 100<<10) + "\r\n\r\n")
			return
		}
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	e := startEdge(t, o.URL, nil, func(c *Config) { c.ReadHeaderTimeout = 300 * time.Millisecond })
	addr := strings.TrimPrefix(e.URL, "http://")
	reqs := []string{
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: user@a.test\r\n\r\n",
		"GET / HTTP/1.1\nHost: a.test\n\n",
		"GET /" + strings.Repeat("a", 70_000) + " HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"GET /big HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a.test\r\nX-Slow: ", // never finished: cut at read_header_timeout
	}
	round := func() {
		for _, r := range reqs {
			rawExchange(t, addr, r)
		}
	}
	round()                             // pools and workers warm up
	time.Sleep(2500 * time.Millisecond) // fasthttp's idle workers go after 2s: a quiet baseline
	g0, f0 := runtime.NumGoroutine(), openFDs(t)
	for range 10 {
		round()
	}
	var g1, f1 int
	testwait.Within(t, "goroutines and fds back to the baseline", 10*time.Second, func() bool {
		g1, f1 = runtime.NumGoroutine(), openFDs(t)
		return g1 <= g0+5 && f1 <= f0+5
	})
	t.Logf("goroutines %d -> %d, open fds %d -> %d after 60 hostile requests", g0, g1, f0, f1)
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}
