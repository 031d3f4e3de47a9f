package edge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"
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
	h1, h2       *chanListener

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
	c.SetReadDeadline(time.Now().Add(m.peekTimeout))
	var first [4]byte
	n, err := io.ReadFull(c, first[:])
	c.SetReadDeadline(time.Time{})
	if err != nil && n == 0 {
		c.Close()
		return
	}
	tc := &trackedConn{Conn: c, mux: m, pre: first[:n]}
	m.mu.Lock()
	m.conns[tc] = struct{}{}
	m.mu.Unlock()
	to := m.h1
	if bytes.Equal(first[:n], h2Preface) {
		to = m.h2
	}
	if !to.deliver(tc) {
		tc.Close()
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
	if c.mux.writeTimeout > 0 {
		c.Conn.SetWriteDeadline(time.Now().Add(c.mux.writeTimeout))
	}
	return c.Conn.Write(p)
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
// buffer; each write gets its deadline.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	buf := make([]byte, 64<<10)
	return io.CopyBuffer(struct{ io.Writer }{c}, r, buf)
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
