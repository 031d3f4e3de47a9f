package h2

import (
	"io"
	"net/http"
	"runtime"
	"testing"

	"github.com/selfcdn/cdn/internal/testheap"
)

// TestIdleConnMemory: what an idle HTTP/2 connection keeps on the heap
// once its request is answered (a browser's connection between page
// loads). The measure includes the test's own client side of each
// connection (a raw framer and HPACK coder, a few KiB).
func TestIdleConnMemory(t *testing.T) {
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})}
	addr := serve(t, s)
	const n = 200
	conns := make([]*rawConn, 0, n)
	before := testheap.InUse()
	for range n {
		c := dialRaw(t, addr)
		c.headers(1, true, get...)
		if _, err := c.expect("headers"); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	after := testheap.InUse()
	per := int64(after-before) / n
	t.Logf("%d idle connections: %d bytes of heap each (server and test client)", n, per)
	// 40 KiB each when every connection kept a 16 KiB read buffer and a
	// 16 KiB write buffer.
	if per > 16<<10 {
		t.Errorf("%d bytes of heap per idle connection, want at most %d", per, 16<<10)
	}
	s.mu.Lock()
	for sc := range s.conns {
		sc.mu.Lock()
		if sc.out.buf != nil {
			t.Error("an idle connection holds a write buffer")
		}
		sc.mu.Unlock()
	}
	s.mu.Unlock()
	runtime.KeepAlive(conns)
}
