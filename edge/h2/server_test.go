package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/selfcdn/cdn/internal/testwait"
)

// serving is the number of connections s serves, or -1 once it is
// shutting down.
func serving(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return -1
	}
	return len(s.conns)
}

// serve starts s on a loopback listener and returns its address; the
// server is closed when the test ends.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return ln.Addr().String()
}

// h2cClient speaks HTTP/2 with prior knowledge.
func h2cClient(t testing.TB) *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func TestRoundTrips(t *testing.T) {
	large := randomBytes(3<<20 + 123) // beyond every default window
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("X-Proto", r.Proto)
			io.WriteString(w, "hello "+r.Host)
		case "/large":
			w.Header().Set("Content-Length", strconv.Itoa(len(large)))
			w.Write(large)
		case "/chunks":
			for i := range 5 {
				fmt.Fprintf(w, "chunk %d\n", i)
				w.(http.Flusher).Flush()
			}
		case "/echo":
			sum := sha256.New()
			n, err := io.Copy(sum, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			fmt.Fprintf(w, "%d %x", n, sum.Sum(nil))
		case "/notmodified":
			w.Header().Set("Etag", `"x"`)
			w.WriteHeader(http.StatusNotModified)
		case "/short":
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "only this")
		default:
			http.NotFound(w, r)
		}
	})
	addr := serve(t, &Server{Handler: h})
	c := h2cClient(t)
	get := func(method, path string, body io.Reader) (*http.Response, []byte, error) {
		req, _ := http.NewRequest(method, "http://"+addr+path, body)
		res, err := c.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res, b, err
	}
	sum := sha256.Sum256(large)
	tests := []struct {
		name, method, path string
		body               []byte
		status             int
		want               string
		header             map[string]string
		wantErr            bool
	}{
		{name: "small", method: "GET", path: "/small", status: 200, want: "hello " + addr,
			header: map[string]string{"Content-Length": strconv.Itoa(len("hello " + addr)), "X-Proto": "HTTP/2.0", "Content-Type": "text/plain"}},
		{name: "head", method: "HEAD", path: "/large", status: 200, want: "", header: map[string]string{"Content-Length": strconv.Itoa(len(large))}},
		{name: "large", method: "GET", path: "/large", status: 200, want: string(large)},
		{name: "flushed chunks", method: "GET", path: "/chunks", status: 200, want: "chunk 0\nchunk 1\nchunk 2\nchunk 3\nchunk 4\n"},
		{name: "request body beyond the windows", method: "POST", path: "/echo", body: large, status: 200, want: fmt.Sprintf("%d %x", len(large), sum)},
		{name: "304 has no body", method: "GET", path: "/notmodified", status: 304, want: "", header: map[string]string{"Etag": `"x"`}},
		{name: "404", method: "GET", path: "/nothing", status: 404, want: "404 page not found\n"},
		{name: "body short of its Content-Length is cut off", method: "GET", path: "/short", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader
			if tt.body != nil {
				body = bytes.NewReader(tt.body)
			}
			res, got, err := get(tt.method, tt.path, body)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %d bytes", len(got))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.status || res.ProtoMajor != 2 {
				t.Errorf("status %d over HTTP/%d, want %d over HTTP/2", res.StatusCode, res.ProtoMajor, tt.status)
			}
			if string(got) != tt.want {
				t.Errorf("body %d bytes, want %d", len(got), len(tt.want))
			}
			for k, v := range tt.header {
				if res.Header.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, res.Header.Get(k), v)
				}
			}
			if res.Header.Get("Date") == "" {
				t.Error("no Date")
			}
		})
	}

	t.Run("concurrent streams on one connection", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 64 {
			wg.Go(func() {
				path := "/small"
				if i%8 == 0 {
					path = "/large"
				}
				_, b, err := get("GET", path, nil)
				if err == nil && path == "/large" && !bytes.Equal(b, large) {
					err = fmt.Errorf("large body differs")
				}
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// rawConn is a client speaking frames directly, for what a well-behaved
// client never sends.
type rawConn struct {
	t    *testing.T
	nc   net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, http2.ClientPreface)
	c := &rawConn{t: t, nc: nc, fr: http2.NewFramer(nc, nc)}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.fr.WriteSettings()
	return c
}

func (c *rawConn) headers(id uint32, end bool, fields ...string) {
	c.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		c.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: end, EndHeaders: true})
}

var get = []string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "x"}

// expect reads frames until one of the wanted kind, failing on EOF.
func (c *rawConn) expect(kind string) (http2.Frame, error) {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			if kind == "goaway" {
				return f, nil
			}
			return f, fmt.Errorf("GOAWAY %v", f.ErrCode)
		case *http2.RSTStreamFrame:
			if kind == "rst" {
				return f, nil
			}
		case *http2.MetaHeadersFrame:
			if kind == "headers" {
				return f, nil
			}
		}
	}
}

func TestProtocolErrors(t *testing.T) {
	addr := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // answers only once the body is judged
		io.WriteString(w, "ok")
	})})
	tests := []struct {
		name string
		send func(c *rawConn)
		kind string // the frame that answers: rst, goaway or headers (served)
		code http2.ErrCode
	}{
		{name: "connection-specific field", send: func(c *rawConn) { c.headers(1, true, append(get, "connection", "keep-alive")...) }, kind: "rst", code: http2.ErrCodeProtocol},
		{name: "te other than trailers", send: func(c *rawConn) { c.headers(1, true, append(get, "te", "gzip")...) }, kind: "rst", code: http2.ErrCodeProtocol},
		{name: "te: trailers is fine", send: func(c *rawConn) { c.headers(1, true, append(get, "te", "trailers")...) }, kind: "headers"},
		{name: "missing :path", send: func(c *rawConn) { c.headers(1, true, ":method", "GET", ":scheme", "http", ":authority", "x") }, kind: "rst", code: http2.ErrCodeProtocol},
		{name: "uppercase field name", send: func(c *rawConn) { c.headers(1, true, append(get, "X-Up", "1")...) }, kind: "rst", code: http2.ErrCodeProtocol},
		{name: "even stream id", send: func(c *rawConn) { c.headers(2, true, get...) }, kind: "goaway", code: http2.ErrCodeProtocol},
		{name: "DATA on an idle stream", send: func(c *rawConn) { c.fr.WriteData(5, true, []byte("x")) }, kind: "goaway", code: http2.ErrCodeProtocol},
		{name: "stream ids going down", send: func(c *rawConn) { c.headers(5, true, get...); c.headers(3, true, get...) }, kind: "goaway", code: http2.ErrCodeProtocol},
		{name: "connection window overflow", send: func(c *rawConn) { c.fr.WriteWindowUpdate(0, 1<<31-1) }, kind: "goaway", code: http2.ErrCodeFlowControl},
		{name: "repeated initial window size applies the last", send: func(c *rawConn) {
			c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
			c.headers(1, true, get...)
		}, kind: "headers"},
		{name: "body longer than its content-length", send: func(c *rawConn) {
			c.headers(1, false, append([]string{":method", "POST", ":scheme", "http", ":path", "/", ":authority", "x"}, "content-length", "1")...)
			c.fr.WriteData(1, true, []byte("four"))
		}, kind: "rst", code: http2.ErrCodeProtocol},
		{name: "depends on itself", send: func(c *rawConn) {
			c.fr.WritePriority(3, http2.PriorityParam{StreamDep: 3, Weight: 1})
		}, kind: "rst", code: http2.ErrCodeProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, addr)
			tt.send(c)
			f, err := c.expect(tt.kind)
			if err != nil {
				t.Fatalf("want %s %v, got %v", tt.kind, tt.code, err)
			}
			switch f := f.(type) {
			case *http2.RSTStreamFrame:
				if f.ErrCode != tt.code {
					t.Errorf("RST_STREAM %v, want %v", f.ErrCode, tt.code)
				}
			case *http2.GoAwayFrame:
				if f.ErrCode != tt.code {
					t.Errorf("GOAWAY %v, want %v", f.ErrCode, tt.code)
				}
			}
		})
	}
}

// TestRapidReset opens and resets streams as fast as it can, each of
// whose handlers blocks until its stream's context ends: the server
// stays within its limits, cuts the connection off, and every handler
// ends.
func TestRapidReset(t *testing.T) {
	var mu sync.Mutex
	cur, peak := 0, 0
	s := &Server{MaxConcurrentStreams: 10, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		cur++
		peak = max(peak, cur)
		mu.Unlock()
		<-r.Context().Done()
		time.Sleep(time.Millisecond)
		mu.Lock()
		cur--
		mu.Unlock()
	})}
	addr := serve(t, s)
	before := runtime.NumGoroutine()
	c := dialRaw(t, addr)
	go func() {
		for id := uint32(1); id < 20000; id += 2 {
			c.headers(id, true, get...)
			if c.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return // cut off
			}
		}
	}()
	f, err := c.expect("goaway")
	if err != nil {
		t.Fatal(err)
	}
	if g := f.(*http2.GoAwayFrame); g.ErrCode != http2.ErrCodeEnhanceYourCalm || g.LastStreamID > 2*uint32(2*s.FloodBudget) {
		t.Errorf("GOAWAY %v after stream %d, want ENHANCE_YOUR_CALM within %d streams", g.ErrCode, g.LastStreamID, 2*s.FloodBudget)
	}
	testwait.Until(t, "every handler ended", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return cur == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if peak > 2*int(s.MaxConcurrentStreams) {
		t.Errorf("%d handlers ran at once, limit %d", peak, 2*s.MaxConcurrentStreams)
	}
	if g := runtime.NumGoroutine(); g > before+10 {
		t.Errorf("%d goroutines, %d before", g, before)
	}
}

// TestShutdownDrains: a request in progress finishes after Shutdown
// starts; the client is told GOAWAY and the connection ends.
func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	})}
	addr := serve(t, s)
	c := h2cClient(t)
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		res, err := c.Get("http://" + addr + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		got <- result{string(b), err}
	}()
	<-started
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	testwait.Until(t, "Shutdown started", func() bool { return serving(s) == -1 })
	close(release)
	r := <-got
	if r.err != nil || r.body != "finished" {
		t.Errorf("in-flight request: %q, %v", r.body, r.err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Shutdown did not return")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
}

func TestHeaderListTooLarge(t *testing.T) {
	addr := serve(t, &Server{MaxHeaderListSize: 1 << 10, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})})
	c := dialRaw(t, addr)
	c.headers(1, true, append(get, "x-big", strings.Repeat("a", 900), "x-big2", strings.Repeat("b", 900))...)
	f, err := c.expect("headers")
	if err != nil {
		t.Fatal(err)
	}
	if s := f.(*http2.MetaHeadersFrame).PseudoValue("status"); s != "431" {
		t.Errorf("status %s, want 431", s)
	}
}

// BenchmarkSmallResponse: one 1 KiB response per round trip on one
// connection (h2load -m1), client framing included.
//
//	go test ./edge/h2/ -run '^$' -bench SmallResponse -benchmem
func BenchmarkSmallResponse(b *testing.B) {
	body := randomBytes(1 << 10)
	addr := serve(b, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", "1024")
		w.Write(body)
	})})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, http2.ClientPreface)
	fr := http2.NewFramer(nc, nc)
	fr.WriteSettings()
	var hb bytes.Buffer
	henc := hpack.NewEncoder(&hb)
	for i := 0; i+1 < len(get); i += 2 {
		henc.WriteField(hpack.HeaderField{Name: get[i], Value: get[i+1]})
	}
	id := uint32(1)
	for b.Loop() {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				b.Fatal(err)
			}
			if d, ok := f.(*http2.DataFrame); ok {
				if n := len(d.Data()); n > 0 {
					fr.WriteWindowUpdate(0, uint32(n))
				}
				if d.StreamEnded() {
					break
				}
			}
		}
		id += 2
	}
}

// frameKinds reads frames until stream id ends (END_STREAM or
// RST_STREAM) and lists what came for it.
func (c *rawConn) frameKinds(id uint32) []string {
	c.t.Helper()
	var kinds []string
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("after %v: %v", kinds, err)
		}
		if f.Header().StreamID != id {
			continue
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			kinds = append(kinds, "HEADERS:"+f.PseudoValue("status"))
			if f.StreamEnded() {
				return kinds
			}
		case *http2.DataFrame:
			k := "DATA"
			if f.StreamEnded() {
				k += "+END"
			}
			kinds = append(kinds, k)
			if f.StreamEnded() {
				// Anything sent after END_STREAM would show up before
				// the PING answer.
				c.fr.WritePing(false, [8]byte{9})
				for {
					g, err := c.fr.ReadFrame()
					if err != nil {
						c.t.Fatal(err)
					}
					if p, ok := g.(*http2.PingFrame); ok && p.IsAck() {
						return kinds
					}
					if g.Header().StreamID == id {
						kinds = append(kinds, fmt.Sprintf("%T", g))
					}
				}
			}
		case *http2.RSTStreamFrame:
			return append(kinds, "RST:"+f.ErrCode.String())
		}
	}
}

// TestResponseEdges: responses whose shape once went wrong.
func TestResponseEdges(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/304-with-length": // an origin's 304 keeps its Content-Length
			w.Header().Set("Content-Length", "1234")
			w.WriteHeader(http.StatusNotModified)
		case "/empty-write-after-body":
			w.Header().Set("Content-Length", "2")
			w.Write([]byte("ok"))
			w.Write(nil)
		case "/head":
			w.Header().Set("Content-Length", "5")
			w.Write([]byte("hello"))
		}
	})
	addr := serve(t, &Server{Handler: h})
	tests := []struct {
		path, method string
		want         string
	}{
		{"/304-with-length", "GET", "[HEADERS:304]"},
		{"/empty-write-after-body", "GET", "[HEADERS:200 DATA+END]"},
		{"/head", "HEAD", "[HEADERS:200]"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			c := dialRaw(t, addr)
			c.headers(1, true, ":method", tt.method, ":scheme", "http", ":path", tt.path, ":authority", "x")
			if got := fmt.Sprint(c.frameKinds(1)); got != tt.want {
				t.Errorf("frames %s, want %s", got, tt.want)
			}
		})
	}
}

// TestUnreadBodyGivesWindowBack: handlers that return without reading
// (all of) the request body do not use up the connection's window, and
// a reader still holding the body after its handler returned is let go.
func TestUnreadBodyGivesWindowBack(t *testing.T) {
	leftReading := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ignore":
		case "/read-no-close":
			io.ReadAll(r.Body)
		case "/read-later":
			go func() {
				<-r.Context().Done() // the handler has returned
				_, err := io.ReadAll(r.Body)
				leftReading <- err
			}()
		}
		io.WriteString(w, "done")
	})
	addr := serve(t, &Server{Handler: h, ConnWindow: initialWindow, StreamWindow: initialWindow})
	c := h2cClient(t)
	body := randomBytes(40 << 10)
	// Twelve 40 KiB bodies through a 64 KiB connection window: only
	// possible if every one comes back.
	for i := range 12 {
		path := []string{"/ignore", "/read-no-close", "/read-later"}[i%3]
		res, err := c.Post("http://"+addr+path, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("request %d (%s): %v", i, path, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if path == "/read-later" {
			if err := testwait.Recv(t, "the read of a body after its handler returned", leftReading); err == nil {
				t.Error("a body read after its handler returned ended cleanly; want an error")
			}
		}
	}
}

// TestShutdownDuringPreface: a connection that has not finished its
// preface ends at once on Shutdown, without a GOAWAY ahead of SETTINGS.
func TestShutdownDuringPreface(t *testing.T) {
	s := &Server{Handler: http.NotFoundHandler()}
	addr := serve(t, s)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, http2.ClientPreface[:10])
	testwait.Until(t, "the connection served", func() bool { return serving(s) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v after %v", err, time.Since(start))
	}
	nc.SetReadDeadline(time.Now().Add(time.Second))
	if n, _ := nc.Read(make([]byte, 100)); n != 0 {
		t.Errorf("got %d bytes before the close; want none", n)
	}
}

// slowDeadlineConn holds its first SetReadDeadline until another call
// has come (or a second has passed): the connection's goroutine is
// slow to start, and a Shutdown's deadline lands in between.
type slowDeadlineConn struct {
	net.Conn
	calls   atomic.Int32
	another chan struct{}
}

func (c *slowDeadlineConn) SetReadDeadline(t time.Time) error {
	if c.calls.Add(1) == 1 {
		select {
		case <-c.another:
		case <-time.After(time.Second):
		}
	} else {
		select {
		case c.another <- struct{}{}:
		default:
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// TestShutdownBeforePrefaceDeadline: a Shutdown between a connection's
// start and its first read deadline still ends it at once; the preface
// timeout must not replace the deadline Shutdown set.
func TestShutdownBeforePrefaceDeadline(t *testing.T) {
	s := &Server{Handler: http.NotFoundHandler()}
	server, client := net.Pipe()
	defer client.Close()
	nc := &slowDeadlineConn{Conn: server, another: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.ServeConn(nc)
	}()
	testwait.Until(t, "the connection served", func() bool { return serving(s) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	testwait.Recv(t, "the connection's end", done)
}

// stallingConn gives every write a short deadline, as the edge's
// listener does, so a client that stops reading fails the writes.
type stallingConn struct{ net.Conn }

func (c stallingConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	return c.Conn.Write(p)
}

// TestClientStopsReading: once a write fails, the connection ends and
// so does its handler.
func TestClientStopsReading(t *testing.T) {
	big := randomBytes(8 << 20)
	handlerDone := make(chan error, 1)
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(big)
		handlerDone <- err
	})}
	s.once.Do(s.defaults)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(served)
			return
		}
		s.ServeConn(stallingConn{c})
		close(served)
	}()
	c := dialRaw(t, ln.Addr().String())
	c.fr.WriteWindowUpdate(0, 1<<30)
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1<<31 - 1})
	c.headers(1, true, get...)
	// ... and never reads.
	if err := testwait.Recv(t, "the handler's write to a client that stopped reading", handlerDone); err == nil {
		t.Error("writing to a client that stopped reading succeeded")
	}
	testwait.Recv(t, "the connection to end after its writes failed", served)
}

// TestStalledWindowResets: a client that never opens its flow-control
// window gets the stream reset after StallTimeout, and the handler's
// write fails instead of waiting forever.
func TestStalledWindowResets(t *testing.T) {
	writeErr := make(chan error, 1)
	addr := serve(t, &Server{StallTimeout: 200 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(randomBytes(1 << 20))
		writeErr <- err
	})})
	c := dialRaw(t, addr)
	c.headers(1, true, get...)
	f, err := c.expect("rst")
	if err != nil {
		t.Fatal(err)
	}
	if code := f.(*http2.RSTStreamFrame).ErrCode; code != http2.ErrCodeCancel {
		t.Errorf("RST_STREAM %v, want CANCEL", code)
	}
	if err := testwait.Recv(t, "the handler's write to fail for want of window", writeErr); err == nil {
		t.Error("the handler's write succeeded")
	}
}

// TestStalledBodyResets: a request body that stops coming fails the
// handler's read after StallTimeout, and the stream is reset.
func TestStalledBodyResets(t *testing.T) {
	readErr := make(chan error, 1)
	addr := serve(t, &Server{StallTimeout: 200 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
	})})
	c := dialRaw(t, addr)
	c.headers(1, false, ":method", "POST", ":scheme", "http", ":path", "/", ":authority", "x")
	c.fr.WriteData(1, false, []byte("a little, then nothing"))
	f, err := c.expect("rst")
	if err != nil {
		t.Fatal(err)
	}
	if code := f.(*http2.RSTStreamFrame).ErrCode; code != http2.ErrCodeCancel {
		t.Errorf("RST_STREAM %v, want CANCEL", code)
	}
	if err := <-readErr; err == nil {
		t.Error("the handler's read of a stalled body succeeded")
	}
}

// TestDataAfterOurResetIgnored: DATA the client sent before it saw our
// RST_STREAM is ignored, not answered with another reset (RFC 9113 §5.1).
func TestDataAfterOurResetIgnored(t *testing.T) {
	addr := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "answered without reading the body")
	})})
	c := dialRaw(t, addr)
	c.headers(1, false, ":method", "POST", ":scheme", "http", ":path", "/", ":authority", "x")
	f, err := c.expect("rst")
	if err != nil {
		t.Fatal(err)
	}
	if code := f.(*http2.RSTStreamFrame).ErrCode; code != http2.ErrCodeNo {
		t.Fatalf("RST_STREAM %v, want NO_ERROR once the response is complete", code)
	}
	c.fr.WriteData(1, false, []byte("late"))
	c.fr.WritePing(false, [8]byte{3})
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			t.Fatalf("late DATA answered with RST_STREAM %v", f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("late DATA answered with GOAWAY %v", f.ErrCode)
		case *http2.PingFrame:
			if f.IsAck() {
				return
			}
		}
	}
}
