package edge

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/testheap"
)

// TestIdleH1ConnMemory: an idle HTTP/1.1 keep-alive connection (a client
// between page loads) keeps almost nothing on the heap once its request
// is answered: no read or write buffer. The measure includes the test's
// own side of each connection (a socket).
func TestIdleH1ConnMemory(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "ok")
	})
	e := startEdge(t, o.URL, nil, nil)
	get(t, "GET", e.URL+"/", nil) // cached: the connections below are hits
	addr := strings.TrimPrefix(e.URL, "http://")
	const n = 200
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	before := testheap.InUse()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("status %d", res.StatusCode)
		}
	}
	after := testheap.InUse()
	per := int64(after-before) / n
	t.Logf("%d idle HTTP/1.1 connections: %d bytes of heap each (server and test client)", n, per)
	// 73 KiB each while every connection kept its 64 KiB reader
	// (max_header_bytes) and 4 KiB writer.
	if per > 8<<10 {
		t.Errorf("%d bytes of heap per idle connection, want at most %d", per, 8<<10)
	}
}
