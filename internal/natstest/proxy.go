package natstest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Link is a TCP proxy in front of a server, for tests that cut one
// client off the network and let it back: Cut closes its connections
// and refuses new ones until Heal.
type Link struct {
	// URL is what the client dials instead of the server.
	URL string

	ln     net.Listener
	target string
	wg     sync.WaitGroup // the accept loop and every copy

	mu    sync.Mutex // protects conns and cut
	conns map[net.Conn]bool
	cut   bool
}

// Proxy starts a Link to the server at url ("nats://host:port"),
// stopped when the test ends.
func Proxy(t testing.TB, url string) *Link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	host := url
	if i := len("nats://"); len(url) > i && url[:i] == "nats://" {
		host = url[i:]
	}
	l := &Link{URL: "nats://" + ln.Addr().String(), ln: ln, target: host, conns: map[net.Conn]bool{}}
	l.wg.Go(l.accept)
	t.Cleanup(func() {
		ln.Close()
		l.Cut()
		l.wg.Wait()
	})
	return l
}

func (l *Link) accept() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			c.Close()
			continue
		}
		l.mu.Lock()
		if l.cut {
			l.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		l.conns[c], l.conns[up] = true, true
		l.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		l.wg.Go(func() { pipe(up, c) })
		l.wg.Go(func() { pipe(c, up) })
	}
}

// Cut closes every proxied connection and refuses new ones.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	for c := range l.conns {
		c.Close()
	}
	clear(l.conns)
}

// Heal lets connections through again.
func (l *Link) Heal() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = false
}
