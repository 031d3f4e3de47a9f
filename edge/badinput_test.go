package edge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/selfcdn/cdn/internal/testwait"
)

func TestBrokenOrigins(t *testing.T) {
	tests := []struct {
		name       string
		origin     http.HandlerFunc
		wantStatus int  // 0: the client's read must fail (connection cut)
		wantAbort  bool // the status arrived but the body was cut off
	}{
		{
			name:       "origin hangs before the header",
			origin:     func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() },
			wantStatus: http.StatusGatewayTimeout,
		},
		{
			name: "origin resets the connection",
			origin: func(w http.ResponseWriter, r *http.Request) {
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			},
			wantStatus: http.StatusBadGateway,
		},
		{
			name: "origin sends garbage",
			origin: func(w http.ResponseWriter, r *http.Request) {
				conn, buf, _ := w.(http.Hijacker).Hijack()
				buf.WriteString("NOT HTTP AT ALL\r\n\r\n")
				buf.Flush()
				conn.Close()
			},
			wantStatus: http.StatusBadGateway,
		},
		{
			name: "origin body shorter than Content-Length",
			origin: func(w http.ResponseWriter, r *http.Request) {
				conn, buf, _ := w.(http.Hijacker).Hijack()
				buf.WriteString("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 100\r\n\r\nonly ten b")
				buf.Flush()
				conn.Close()
			},
			wantStatus: 200, wantAbort: true,
		},
		{
			name: "origin stalls mid-body",
			origin: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				w.Header().Set("Content-Length", "100")
				io.WriteString(w, "start")
				w.(http.Flusher).Flush()
				<-r.Context().Done()
			},
			wantStatus: 200, wantAbort: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t, tt.origin)
			e := startEdge(t, o.URL, nil, func(c *Config) {
				c.Origin.HeaderTimeout = 300 * time.Millisecond
				c.Origin.ReadTimeout = 300 * time.Millisecond
			})
			for attempt := range 2 {
				res, err := http.Get(e.URL + "/broken")
				if err != nil && tt.wantAbort {
					continue // cut before the status line went out: also never a short body
				}
				if err != nil {
					t.Fatalf("attempt %d: %v", attempt, err)
				}
				_, rerr := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != tt.wantStatus {
					t.Errorf("attempt %d: status %d, want %d", attempt, res.StatusCode, tt.wantStatus)
				}
				if tt.wantAbort && rerr == nil {
					t.Errorf("attempt %d: body read completed; want the connection cut so the short body is not taken as whole", attempt)
				}
				if !tt.wantAbort && res.Header.Get("Cache-Status") == "" {
					t.Errorf("attempt %d: error response without Cache-Status", attempt)
				}
			}
			// Nothing was cached from the broken fetch: both attempts went
			// to the origin.
			if got := o.hits.Load(); got < 2 {
				t.Errorf("origin requests = %d, want 2 (nothing cached from a broken fetch)", got)
			}
		})
	}
}

func TestMalformedRequests(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "ok")
	})
	e := startEdge(t, o.URL, nil, func(c *Config) { c.MaxHeaderBytes = 8 << 10 })
	addr := strings.TrimPrefix(e.URL, "http://")
	tests := []struct {
		name       string
		raw        string
		wantStatus int
	}{
		// Longer than the h2c preface, which the server waits for in full.
		{name: "garbage request line", raw: "GARBAGE GARBAGE GARBAGE GARBAGE\r\n\r\n", wantStatus: 400},
		{name: "bad header line", raw: "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", wantStatus: 400},
		{name: "missing host", raw: "GET / HTTP/1.1\r\n\r\n", wantStatus: 400},
		{name: "oversized header", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", wantStatus: 431},
		{name: "absurd cache-control", raw: "GET / HTTP/1.1\r\nHost: x\r\nCache-Control: max-age=99999999999999999999999, max-stale=-1, min-fresh=\"\r\nConnection: close\r\n\r\n", wantStatus: 200},
		{name: "bad percent encoding", raw: "GET /%zz%%/../x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, tt.raw)
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("read response: %v", err)
			}
			res.Body.Close()
			if res.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", res.StatusCode, tt.wantStatus)
			}
		})
	}
}

// TestNoGoroutineLeak runs misses, hits, passes and broken fetches, then
// checks that stopping the edge leaves no goroutine behind.
func TestNoGoroutineLeak(t *testing.T) {
	// fasthttp keeps one process-wide goroutine for its Date header; start
	// it before counting.
	var warm fasthttp.Response
	warm.Header.AppendBytes(nil)
	before := runtime.NumGoroutine()
	t.Run("traffic", func(t *testing.T) {
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/hang":
				<-r.Context().Done()
			case "/nostore":
				w.Header().Set("Cache-Control", "no-store")
			default:
				w.Header().Set("Cache-Control", "max-age=60")
			}
			io.WriteString(w, "x")
		})
		e := startEdge(t, o.URL, nil, func(c *Config) { c.Origin.HeaderTimeout = 200 * time.Millisecond })
		client := &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		for i := range 20 {
			for _, p := range []string{"/a", "/a", "/nostore", "/hang", fmt.Sprintf("/m%d", i)} {
				if res, err := client.Get(e.URL + p); err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			}
		}
	})
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the edge stopped, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestClientThatStopsReading checks that an HTTP/1.1 client which asks for
// a large object and never reads is cut off after write_timeout instead of
// holding a connection and a body forever. (The deadline is set per write
// on every connection of the listener, h2c included.)
func TestClientThatStopsReading(t *testing.T) {
	const size = 64 << 20
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Length", fmt.Sprint(size))
		w.Write(make([]byte, size))
	})
	e := startEdge(t, o.URL, nil, func(c *Config) { c.WriteTimeout = 200 * time.Millisecond })
	stallReading(t, e, "/huge", size)
}

// stallReading asks the edge for path (size bytes) and reads nothing for
// longer than its write_timeout (200 ms), then checks that the edge cut
// the connection short after sending the status line.
func stallReading(t *testing.T, e *testEdge, path string, size int64) {
	t.Helper()
	addr := strings.TrimPrefix(e.URL, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr) // the host get() caches under
	// A sleep, not a wait: the behaviour under test is a client that reads
	// nothing for longer than write_timeout while the edge's writes stall.
	time.Sleep(2 * time.Second)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var head [12]byte
	if _, err := io.ReadFull(conn, head[:]); err != nil || string(head[:]) != "HTTP/1.1 200" {
		t.Fatalf("response starts %q, %v; want the object's 200 before the stall", head, err)
	}
	n, err := io.Copy(io.Discard, conn)
	if n >= size {
		t.Errorf("read %d bytes (%v) after stalling; want the edge to have cut the connection", n, err)
	}
}

// TestDiskHitClientStopsReading is TestClientThatStopsReading for a hit
// that streams from the disk tier, copied or sent with sendfile: the
// stalled write is cut off after write_timeout either way.
func TestDiskHitClientStopsReading(t *testing.T) {
	const size = 32 << 20
	body := payload(size)
	for _, sendFile := range []bool{false, true} {
		t.Run(fmt.Sprintf("sendfile=%v", sendFile), func(t *testing.T) {
			o := objectOrigin(t, map[string][]byte{"/huge": body})
			dir := t.TempDir()
			e := startEdge(t, o.URL, nil, withSendFile(func(c *Config) {
				withDisk(dir, 64<<10)(c)
				c.WriteTimeout = 200 * time.Millisecond
			}, sendFile))
			// The priming read may itself be cut off by the 200 ms
			// write_timeout on a busy machine; the fill goes on and
			// stores the object all the same.
			if res, err := http.Get(e.URL + "/huge"); err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			testwait.Until(t, "the object on disk", func() bool { return len(objectFiles(t, dir)) == 1 })
			stallReading(t, e, "/huge", size)
			if hits := metricValue(t, e, "cdn_edge_cache_tier_hits_total"); hits != 1 {
				t.Errorf("tier hits = %v, want the stalled request's 1", hits)
			}
			if sent := metricValue(t, e, "cdn_edge_sendfile_bytes_total"); sendFile != (sent > 0) {
				t.Errorf("sendfile bytes = %v with sendfile %v", sent, sendFile)
			}
		})
	}
}
