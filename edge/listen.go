package edge

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/edge/cache"
)

// h2Preface starts every HTTP/2 connection with prior knowledge (RFC 9113
// §3.4); its first four bytes tell it from any HTTP/1.x request line.
var h2Preface = []byte("PRI ")

// protoMux splits one plain listener between the HTTP/1.1 front and the
// h2c server by the first bytes each connection sends.
type protoMux struct {
	ln           net.Listener
	peekTimeout  time.Duration
	writeTimeout time.Duration
	notSentLowat int // TCP_NOTSENT_LOWAT for every connection; 0 leaves the kernel's
	// tls, when set, makes this the HTTPS listener: each connection's
	// handshake is finished within peekTimeout, and ALPN picks the server.
	tls        *tls.Config
	handshakes *prometheus.CounterVec // by result; with tls
	// sendFileBytes counts what trackedConn.ReadFrom sent with sendfile.
	sendFileBytes prometheus.Counter
	h1, h2        *chanListener

	mu    sync.Mutex // protects conns
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup // the accept loop and the sniffing goroutines
}

func newProtoMux(ln net.Listener, peekTimeout, writeTimeout time.Duration, notSentLowat int) *protoMux {
	return &protoMux{
		ln:           ln,
		peekTimeout:  peekTimeout,
		writeTimeout: writeTimeout,
		notSentLowat: notSentLowat,
		h1:           newChanListener(ln.Addr()),
		h2:           newChanListener(ln.Addr()),
		conns:        make(map[net.Conn]struct{}),
	}
}

// run accepts until the listener is closed.
func (m *protoMux) run() {
	m.wg.Go(func() {
		for {
			c, err := m.ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					// Out of descriptors, or a connection reset while
					// queued: back off and keep serving.
					time.Sleep(5 * time.Millisecond)
					continue
				}
				m.h1.Close()
				m.h2.Close()
				return
			}
			if m.notSentLowat > 0 {
				setNotSentLowat(c, m.notSentLowat)
			}
			m.wg.Go(func() { m.sniff(c) })
		}
	})
}

// sniff reads the first bytes (within the header timeout, so a silent
// client cannot hold a goroutine forever) and hands the connection on.
func (m *protoMux) sniff(c net.Conn) {
	if m.tls != nil {
		m.handshake(c)
		return
	}
	c.SetReadDeadline(time.Now().Add(m.peekTimeout))
	// At least the 4 bytes that tell h2c from HTTP/1.1, and whatever else
	// came with them: most clients send a whole request head at once.
	var first [2048]byte
	n, err := io.ReadAtLeast(c, first[:], len(h2Preface))
	c.SetReadDeadline(time.Time{})
	if err != nil && n == 0 {
		c.Close()
		return
	}
	h2 := bytes.HasPrefix(first[:n], h2Preface)
	if !h2 && bareLF(first[:n]) {
		// fasthttp waits for a CRLF CRLF that never comes; RFC 9112 §2.2
		// lets a server refuse a bare LF, so say so at once.
		c.SetWriteDeadline(time.Now().Add(time.Second))
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 36\r\n\r\nbare LF line ending in request head\n")
		c.Close()
		return
	}
	tc := &trackedConn{Conn: c, mux: m, pre: bytes.Clone(first[:n])}
	m.mu.Lock()
	m.conns[tc] = struct{}{}
	m.mu.Unlock()
	to := m.h1
	if h2 {
		to = m.h2
	}
	if !to.deliver(tc) {
		tc.Close()
	}
}

// bareLF reports whether the start of a request head ends a line with a
// bare LF before its end (CRLF CRLF), as far as b reaches.
func bareLF(b []byte) bool {
	if end := bytes.Index(b, []byte("\r\n\r\n")); end >= 0 {
		b = b[:end]
	}
	for i := bytes.IndexByte(b, '\n'); i >= 0; {
		if i == 0 || b[i-1] != '\r' {
			return true
		}
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// handshake finishes a TLS handshake within the header timeout and hands
// the connection to the server its ALPN protocol names.
func (m *protoMux) handshake(c net.Conn) {
	tc := &trackedConn{Conn: c, mux: m}
	m.mu.Lock()
	m.conns[tc] = struct{}{}
	m.mu.Unlock()
	conn := tls.Server(tc, m.tls)
	ctx, cancel := context.WithTimeout(context.Background(), m.peekTimeout)
	err := conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		var rec tls.RecordHeaderError
		if errors.As(err, &rec) && rec.Conn != nil {
			// Plain HTTP on the TLS port: say so, as net/http does.
			m.handshakes.WithLabelValues("plain_http").Inc()
			rec.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			io.WriteString(rec.Conn, "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use https://\n")
		} else {
			m.handshakes.WithLabelValues("failed").Inc()
		}
		tc.Close()
		return
	}
	m.handshakes.WithLabelValues("ok").Inc()
	to := m.h1
	switch conn.ConnectionState().NegotiatedProtocol {
	case "h2":
		to = m.h2
	case "acme-tls/1":
		// The CA's tls-alpn-01 check is done with the handshake.
		conn.Close()
		return
	}
	if !to.deliver(conn) {
		conn.Close()
	}
}

// close stops accepting and, after the servers drained what they could,
// closes the connections still open.
func (m *protoMux) close() {
	m.ln.Close()
	m.mu.Lock()
	for c := range m.conns {
		c.(*trackedConn).Conn.Close()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// trackedConn replays the sniffed bytes, gives every write its own
// deadline (a client that stops reading is cut off after writeTimeout
// without progress, however large the response), and leaves the mux's set
// on Close.
type trackedConn struct {
	net.Conn
	mux  *protoMux
	pre  []byte
	once sync.Once
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.armWrite()
	return c.Conn.Write(p)
}

// armWrite gives the coming write its deadline.
func (c *trackedConn) armWrite() {
	if c.mux.writeTimeout > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.mux.writeTimeout))
	}
}

// WriteBuffers writes b with one writev (h2.BuffersWriter), under the
// same per-write deadline as Write.
func (c *trackedConn) WriteBuffers(b *net.Buffers) (int64, error) {
	c.armWrite()
	return b.WriteTo(c.Conn)
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// ReadFrom writes large response bodies straight to the socket as they
// arrive, so fasthttp does not hold the tail of each burst in its write
// buffer; each write gets its deadline. A body cached on disk that can
// go out with sendfile (fasthttp hands it over bounded by its length)
// does.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if n, sent, err := c.sendFile(r); sent {
		return n, err
	}
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	return io.CopyBuffer(struct{ io.Writer }{c}, r, *bp)
}

// copyBufPool holds ReadFrom's 64 KiB copy buffers.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// sendFile sends r with sendfile when it is a disk body (bounded by
// fasthttp's LimitedReader) on a socket, and reports whether it did;
// when it did not, nothing was sent.
func (c *trackedConn) sendFile(r io.Reader) (n int64, sent bool, err error) {
	lr, ok := r.(*io.LimitedReader)
	if !ok {
		return 0, false, nil
	}
	body, ok := lr.R.(*cache.SendReader)
	sc, isSocket := c.Conn.(syscall.Conn)
	if !ok || !isSocket {
		return 0, false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	n, err = body.SendTo(rc, lr.N, c.armWrite)
	if errors.Is(err, cache.ErrNoSendFile) {
		return 0, false, nil
	}
	lr.N -= n
	if c.mux.sendFileBytes != nil {
		c.mux.sendFileBytes.Add(float64(n))
	}
	return n, true, err
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.mux.mu.Lock()
		delete(c.mux.conns, c)
		c.mux.mu.Unlock()
	})
	return c.Conn.Close()
}

// chanListener is a net.Listener fed connections by the mux.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
