package edge

import (
	"bytes"
	"crypto/tls"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Conn opens an HTTP/2 connection over TLS to the edge and returns its
// framer after the preface and SETTINGS.
func h2Conn(t *testing.T, e *tlsEdge) (*tls.Conn, *http2.Framer) {
	t.Helper()
	c, err := tls.Dial("tcp", e.httpsAddr, &tls.Config{ServerName: "www.example.test", RootCAs: e.roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	return c, fr
}

func requestBlock(path string, extra int) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for _, f := range []hpack.HeaderField{
		{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "www.example.test"}, {Name: ":path", Value: path},
	} {
		enc.WriteField(f)
	}
	for range extra {
		enc.WriteField(hpack.HeaderField{Name: "x-filler", Value: strings.Repeat("a", 1000), Sensitive: true})
	}
	return b.Bytes()
}

// goroutinesSettle returns the goroutine count once it stops falling.
func goroutinesSettle() int {
	n := runtime.NumGoroutine()
	for range 50 {
		time.Sleep(20 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

// TestHTTP2Floods: a rapid-reset flood (HEADERS then RST_STREAM, many
// thousand times) and a CONTINUATION flood (a header block that never
// ends) end with the connection cut or drained, leave no goroutines or
// memory behind, and the edge keeps serving others.
func TestHTTP2Floods(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "ok")
	})
	e := startTLSEdge(t, o.URL, nil)
	client := e.client(t, "h2")
	if res, _ := getWith(t, client, "GET", e.url("www.example.test", "/warm"), nil); res.StatusCode != 200 {
		t.Fatalf("warm-up: %d", res.StatusCode)
	}
	before := goroutinesSettle()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapAlloc

	t.Run("rapid reset", func(t *testing.T) {
		c, fr := h2Conn(t, e)
		defer c.Close()
		block := requestBlock("/warm", 0)
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		go io.Copy(io.Discard, c) // keep reading so the server is never blocked on us
		sent := 0
		for id := uint32(1); id < 2*20_000; id += 2 {
			if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}) != nil {
				break // the server closed the connection: a limit held
			}
			if fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				break
			}
			sent++
		}
		t.Logf("rapid reset: %d streams opened and reset before the server stopped us", sent)
	})
	t.Run("CONTINUATION flood", func(t *testing.T) {
		c, fr := h2Conn(t, e)
		defer c.Close()
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		go io.Copy(io.Discard, c)
		frag := requestBlock("/warm", 60) // ~60 KB of header per round
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: frag[:1000]}); err != nil {
			t.Fatal(err)
		}
		sentBytes := 1000
		for range 10_000 {
			if fr.WriteContinuation(1, false, frag) != nil {
				break
			}
			sentBytes += len(frag)
		}
		if sentBytes > 64<<20 {
			t.Errorf("the server took %d MB of one header block without closing the connection", sentBytes>>20)
		}
		t.Logf("CONTINUATION flood: cut off after %d KB of one header block", sentBytes>>10)
	})

	// Still serving, and nothing left behind.
	if res, body := getWith(t, client, "GET", e.url("www.example.test", "/after"), nil); res.StatusCode != 200 || body != "ok" {
		t.Errorf("after the floods: %d %q", res.StatusCode, body)
	}
	if after := goroutinesSettle(); after > before+10 {
		t.Errorf("goroutines: %d before the floods, %d after", before, after)
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if grew := int64(ms.HeapAlloc) - int64(heapBefore); grew > 32<<20 {
		t.Errorf("heap grew %d MB over the floods", grew>>20)
	}
}
