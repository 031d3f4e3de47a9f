package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
	"golang.org/x/net/http2/hpack"

	"github.com/selfcdn/cdn/internal/testwait"
)

// The HTTP/2 attacks of issue 26 tried against quic-go's HTTP/3 server as
// the edge configures it (docs/performance.md sums up what they show):
// what bounds them is QUIC's stream credit (MAX_STREAMS, given back only
// once a request is done both ways) and the edge's body gate.

// h3Raw is a QUIC connection to the edge speaking HTTP/3 frames by hand.
type h3Raw struct {
	conn *quic.Conn
}

func dialH3Raw(t *testing.T, e *tlsEdge) *h3Raw {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, e.httpsAddr, &tls.Config{ServerName: "www.example.test", RootCAs: e.roots, NextProtos: []string{"h3"}}, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	ctrl, err := conn.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	ctrl.Write([]byte{0x00, 0x04, 0x00}) // control stream, empty SETTINGS
	return &h3Raw{conn: conn}
}

// h3Frame appends an HTTP/3 frame.
func h3Frame(b []byte, typ uint64, payload []byte) []byte {
	b = quicvarint.Append(b, typ)
	b = quicvarint.Append(b, uint64(len(payload)))
	return append(b, payload...)
}

// h3Request is a QPACK field section (static table only, RFC 9204
// Appendix A) for method (0xd1 GET, 0xd4 POST) on / at www.example.test.
func h3Request(method byte) []byte {
	return append([]byte{0x00, 0x00, method, 0xd7, 0xc1, 0x50, 16}, "www.example.test"...)
}

const h3RequestCancelled = 0x10c // H3_REQUEST_CANCELLED

// TestH3RapidReset: requests opened and reset as fast as QUIC lets a
// client. quic-go never closes the connection for it, but the client can
// only have max_streams requests unfinished at once (a reset stream's
// credit comes back once its handler is done), so the work in flight is
// bounded, and nothing is left behind.
func TestH3RapidReset(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "ok")
	})
	e := startTLSEdge(t, o.URL, nil)
	client := e.client(t, "h3")
	if res, _ := getWith(t, client, "GET", e.url("www.example.test", "/"), nil); res.StatusCode != 200 {
		t.Fatalf("warm-up: %d", res.StatusCode)
	}
	before := goroutinesSettle()
	c := dialH3Raw(t, e)
	req := h3Frame(nil, 0x01, h3Request(0xd1))
	const n = 5000
	start := time.Now()
	for i := range n {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		str, err := c.conn.OpenStreamSync(ctx)
		cancel()
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		str.Write(req)
		str.CancelWrite(h3RequestCancelled)
		str.CancelRead(h3RequestCancelled)
	}
	took := time.Since(start)
	if c.conn.Context().Err() != nil {
		t.Logf("the connection was closed: %v", context.Cause(c.conn.Context()))
	}
	t.Logf("%d requests opened and reset in %s (%.0f/s) on one connection, not closed", n, took, n/took.Seconds())
	if res, body := getWith(t, client, "GET", e.url("www.example.test", "/"), nil); res.StatusCode != 200 || body != "ok" {
		t.Errorf("after the resets: %d %q", res.StatusCode, body)
	}
	c.conn.CloseWithError(0, "")
	testwait.Until(t, "the handlers of reset requests to end", func() bool { return runtime.NumGoroutine() <= before+10 })
}

// TestH3EmptyDataCutShort: a POST followed by empty DATA frames,
// endlessly. quic-go parses them (two bytes each, under QUIC flow
// control) without limit and hands each to the handler as a read of
// nothing; the edge's body gate answers 408 after maxEmptyReads of them,
// long before body_timeout, and no origin is asked.
func TestH3EmptyDataCutShort(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	e := startTLSEdge(t, o.URL, func(c *Config) { c.BodyTimeout = 5 * time.Second })
	c := dialH3Raw(t, e)
	str, err := c.conn.OpenStreamSync(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	str.Write(h3Frame(nil, 0x01, h3Request(0xd4)))
	empty := bytes.Repeat([]byte{0x00, 0x00}, 8<<10) // 8,192 empty DATA frames
	sent := make(chan int, 1)
	go func() {
		frames := 0
		str.SetWriteDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, err := str.Write(empty); err != nil {
				sent <- frames
				return
			}
			frames += len(empty) / 2
		}
	}()
	str.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	head, err := io.ReadAll(io.LimitReader(str, 64)) // the response's HEADERS frame, then the stream ends
	took := time.Since(start)
	var se *quic.StreamError
	if err != nil && !errors.As(err, &se) {
		t.Fatalf("reading the response: %v", err)
	}
	str.CancelWrite(h3RequestCancelled)
	frames := <-sent
	if status := h3Status(head); status != "408" {
		t.Errorf("status %q, want 408 (response bytes %x)", status, head)
	}
	if took > 2*time.Second {
		t.Errorf("the request lasted %s, want it cut short of body_timeout (5s)", took)
	}
	if n := o.hits.Load(); n != 0 {
		t.Errorf("the origin got %d requests", n)
	}
	t.Logf("%d empty DATA frames sent (into QUIC's buffers and flow control) before the edge answered after %s; quic-go did not close the connection: %v", frames, took, c.conn.Context().Err() == nil)
}

// TestH3UnfinishedHeadersBounded: requests whose HEADERS frame never
// finishes. quic-go has no header timeout (a request stream waits for its
// HEADERS as long as the connection lives, and any packet keeps it alive
// past idle_timeout), but a client gets no more than max_streams of them
// per connection: the next stream waits for credit that never comes.
func TestH3UnfinishedHeadersBounded(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {})
	e := startTLSEdge(t, o.URL, func(c *Config) {
		c.TLS.MaxStreams = 20
		c.ReadHeaderTimeout = 200 * time.Millisecond
	})
	c := dialH3Raw(t, e)
	var strs []*quic.Stream
	for i := range 20 {
		str, err := c.conn.OpenStreamSync(t.Context())
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		str.Write([]byte{0x01, 0x40, 100, 0x00, 0x00}) // HEADERS of 100 bytes: 2 come
		strs = append(strs, str)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if str, err := c.conn.OpenStreamSync(ctx); err == nil {
		str.CancelWrite(h3RequestCancelled)
		t.Errorf("a request stream beyond max_streams (20) was opened while 20 wait for their HEADERS")
	}
	// Past read_header_timeout: are they still held?
	held := 0
	for _, str := range strs {
		str.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := str.Read(make([]byte, 1)); errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			held++
		}
	}
	t.Logf("%d of %d unfinished requests still held %s after read_header_timeout (quic-go has no header timeout)", held, len(strs), 500*time.Millisecond)
}

// h3Status reads :status from the start of a response: a HEADERS frame
// whose field section begins with :status as a literal with a static name
// reference (how quic-go writes every status but a few indexed ones).
func h3Status(b []byte) string {
	r := quicvarint.NewReader(bytes.NewReader(b))
	if typ, err := quicvarint.Read(r); err != nil || typ != 0x01 {
		return ""
	}
	if _, err := quicvarint.Read(r); err != nil {
		return ""
	}
	sec, _ := io.ReadAll(r)
	// Prefix 00 00, then 0101 1111 0000 1001: name reference 15+9 = 24,
	// :status in RFC 9204 Appendix A.
	if len(sec) < 5 || !bytes.Equal(sec[:4], []byte{0x00, 0x00, 0x5f, 0x09}) {
		return ""
	}
	n := int(sec[4] & 0x7f)
	if len(sec) < 5+n {
		return ""
	}
	if sec[4]&0x80 == 0 {
		return string(sec[5 : 5+n])
	}
	v, err := hpack.HuffmanDecodeToString(sec[5 : 5+n]) // QPACK uses HPACK's Huffman code
	if err != nil {
		return ""
	}
	return v
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
