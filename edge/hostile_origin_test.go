package edge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// rawOrigin answers every request with respond, written by hand: a
// hostile origin net/http would not let a test be. A path ending in
// "/close" has its connection closed after the answer.
type rawOrigin struct {
	URL  string
	hits atomic.Int64
}

func newRawOrigin(t *testing.T, respond func(w *bufio.Writer, path string)) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{URL: "http://" + ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					o.hits.Add(1)
					w := bufio.NewWriterSize(c, 64<<10)
					respond(w, req.URL.Path)
					if w.Flush() != nil || strings.HasSuffix(req.URL.Path, "/close") {
						return
					}
				}
			})
		}
	})
	return o
}

// TestOriginHeaderCap: an origin's header block over origin.max_header_bytes
// is a 502 and nothing is stored; one under it is served and cached, disk
// tier included.
func TestOriginHeaderCap(t *testing.T) {
	o := newRawOrigin(t, func(w *bufio.Writer, path string) {
		size := 60 << 10
		if path == "/big" {
			size = 70 << 10
		}
		fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n")
		for i := 0; size > 0; i++ {
			n := min(size, 4000)
			fmt.Fprintf(w, "X-Filler-%d: %s\r\n", i, strings.Repeat("a", n))
			size -= n
		}
		fmt.Fprintf(w, "\r\nok")
	})
	e := startEdge(t, o.URL, nil, func(c *Config) { c.Cache.Disk = 64 << 20 })
	for range 2 {
		before := o.hits.Load()
		res, _ := get(t, "GET", e.URL+"/big", nil)
		if res.StatusCode != http.StatusBadGateway {
			t.Errorf("70 KiB of origin header: %d, want 502", res.StatusCode)
		}
		if o.hits.Load() == before {
			t.Error("a request for /big did not reach the origin: something was stored")
		}
	}
	for i := range 2 {
		res, body := get(t, "GET", e.URL+"/fine", nil)
		if res.StatusCode != 200 || body != "ok" {
			t.Fatalf("60 KiB of origin header: %d %q", res.StatusCode, body)
		}
		if i == 1 && cacheResult(res.Header.Get("Cache-Status")) != "hit" {
			t.Errorf("second /fine: %s, want a hit", res.Header.Get("Cache-Status"))
		}
	}
}

// TestOriginHugeHeadersMemory: 20 requests at once to an origin that
// sends 8 MiB of header each cost the edge about the cap each, not 8 MiB.
func TestOriginHugeHeadersMemory(t *testing.T) {
	line := strings.Repeat("b", 8<<20)
	o := newRawOrigin(t, func(w *bufio.Writer, _ string) {
		// Written in pieces: fmt would copy the 8 MiB into a buffer.
		w.WriteString("HTTP/1.1 200 OK\r\nX-Huge: ")
		w.WriteString(line)
		w.WriteString("\r\nContent-Length: 2\r\n\r\nok")
	})
	e := startEdge(t, o.URL, nil, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := range 20 {
		wg.Go(func() {
			res, err := http.Get(fmt.Sprintf("%s/huge-%d", e.URL, i))
			if err != nil {
				bad.Add(1)
				return
			}
			res.Body.Close()
			if res.StatusCode != http.StatusBadGateway {
				bad.Add(1)
			}
		})
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	if n := bad.Load(); n > 0 {
		t.Errorf("%d of 20 requests did not get a 502", n)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("20 origins sending 8 MiB headers: %.1f MiB allocated in all (the test's origin included)", float64(allocated)/(1<<20))
	// The origin side writes from one shared string; reading 20 headers
	// whole would allocate over 160 MiB.
	if allocated > 40<<20 {
		t.Errorf("allocated %d MiB for 20 capped headers, want under 40", allocated>>20)
	}
}

// TestOriginTransferEncoding: an origin's chunked body is served and
// stored without its Transfer-Encoding field; framing RFC 9112 §6.1 makes
// malformed (chunked twice, a coding the edge cannot undo) is a 502, as
// nginx answers it, and nothing is stored.
func TestOriginTransferEncoding(t *testing.T) {
	tests := []struct {
		name, te string
		want     int
	}{
		{name: "chunked", te: "Transfer-Encoding: chunked\r\n", want: 200},
		{name: "chunked, any case", te: "Transfer-Encoding: Chunked\r\n", want: 200},
		{name: "chunked with a Content-Length", te: "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n", want: 200},
		{name: "chunked twice", te: "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", want: 502},
		{name: "an unknown coding", te: "Transfer-Encoding: gzip, chunked\r\n", want: 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newRawOrigin(t, func(w *bufio.Writer, _ string) {
				w.WriteString("HTTP/1.1 200 OK\r\n" + tt.te + "Cache-Control: max-age=60\r\n\r\n2\r\nok\r\n0\r\n\r\n")
			})
			e := startEdge(t, o.URL, nil, nil)
			for i := range 2 {
				res, body := get(t, "GET", e.URL+"/te", nil)
				if res.StatusCode != tt.want {
					t.Fatalf("answer %d: %d %q, want %d", i, res.StatusCode, body, tt.want)
				}
				if len(res.TransferEncoding) > 1 || res.Header.Get("Transfer-Encoding") != "" {
					t.Errorf("answer %d passed the origin's Transfer-Encoding on: %v %v", i, res.TransferEncoding, res.Header)
				}
				if tt.want == 200 && (body != "ok" || i == 1 && cacheResult(res.Header.Get("Cache-Status")) != "hit") {
					t.Errorf("answer %d: %q, %s; want ok, the second a hit", i, body, res.Header.Get("Cache-Status"))
				}
			}
			if tt.want == 502 && o.hits.Load() < 2 {
				t.Errorf("origin asked %d times, want each request to go to it (nothing stored)", o.hits.Load())
			}
		})
	}
}
