package h2

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"

	"github.com/selfcdn/cdn/internal/testwait"
)

// cutOff floods a new connection with WINDOW_UPDATE +1 frames until s
// cuts it off, and returns it once its GOAWAY has come and s is done
// serving it (it is held, or closed if s holds none). s serves no other
// connection.
func cutOff(t *testing.T, s *Server, addr string) *rawConn {
	t.Helper()
	c := dialRaw(t, addr)
	for range s.FloodBudget + 1 {
		c.fr.WriteWindowUpdate(0, 1)
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", g.ErrCode)
			}
			break
		}
	}
	testwait.Until(t, "the cut-off connection handed over", func() bool { return serving(s) == 0 })
	return c
}

// closedWithin reports whether the server closed c within d: a read
// that ends in EOF or a reset, not a timeout.
func closedWithin(c *rawConn, d time.Duration) bool {
	c.nc.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.nc)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// openFiles is how many descriptors the process has open, or -1 where
// /proc does not tell.
func openFiles() int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(fds)
}

// TestCutOffHeld: a connection cut off for a flood is held open after its
// GOAWAY and nothing more is read from it, so a client that keeps writing
// blocks instead of learning of the close; it is closed when its hold
// ends, at most MaxHeld are held (the oldest closed first), and Close
// closes the held ones at once, leaving no descriptor behind.
func TestCutOffHeld(t *testing.T) {
	server := func(t *testing.T, hold time.Duration, max int) (*Server, string, *Metrics) {
		s, addr, _, m := floodServer(t, func(s *Server) {
			s.FloodBudget, s.CutOffHold, s.MaxHeld = 10, hold, max
		})
		return s, addr, m
	}

	t.Run("held, then closed", func(t *testing.T) {
		const hold = 500 * time.Millisecond
		s, addr, m := server(t, hold, 10)
		c := cutOff(t, s, addr)
		cutAt := time.Now()
		if got := testutil.ToFloat64(m.held); got != 1 {
			t.Errorf("cdn_edge_h2_held_connections = %v, want 1", got)
		}
		// Nothing is read: the client's writes fill the windows and block
		// until their deadline, instead of failing on a closed socket.
		c.nc.SetWriteDeadline(time.Now().Add(hold / 5))
		junk := make([]byte, 64<<10)
		var err error
		for err == nil {
			_, err = c.nc.Write(junk)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("writing to the held connection: %v, want a timeout (blocked, not closed)", err)
		}
		if !closedWithin(c, 10*time.Second) {
			t.Fatal("the held connection was not closed after its hold")
		}
		if d := time.Since(cutAt); d < hold*9/10 {
			t.Errorf("closed %s after the cut, want after the hold (%s)", d, hold)
		}
		testwait.Until(t, "the hold released", func() bool { return s.held.count() == 0 })
		if got := testutil.ToFloat64(m.held); got != 0 {
			t.Errorf("cdn_edge_h2_held_connections = %v after the hold, want 0", got)
		}
	})

	t.Run("requests in flight reset", func(t *testing.T) {
		// A client cut off by mistake learns of its requests' end at
		// once, not when the hold ends.
		_, addr, _ := server(t, time.Minute, 10)
		c := dialRaw(t, addr)
		c.headers(1, false, post...) // its handler waits for the stream's end
		for range 20 {
			c.fr.WriteWindowUpdate(0, 1)
		}
		var reset *http2.RSTStreamFrame
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				t.Fatalf("no GOAWAY: %v", err)
			}
			if r, ok := f.(*http2.RSTStreamFrame); ok && r.StreamID == 1 {
				reset = &http2.RSTStreamFrame{ErrCode: r.ErrCode}
			}
			if _, ok := f.(*http2.GoAwayFrame); ok {
				break
			}
		}
		if reset == nil || reset.ErrCode != http2.ErrCodeEnhanceYourCalm {
			t.Errorf("stream 1 reset with %+v before the GOAWAY, want ENHANCE_YOUR_CALM", reset)
		}
	})

	t.Run("oldest closed first", func(t *testing.T) {
		s, addr, _ := server(t, time.Minute, 2)
		a := cutOff(t, s, addr)
		b := cutOff(t, s, addr)
		c := cutOff(t, s, addr)
		if !closedWithin(a, 5*time.Second) {
			t.Error("the oldest held connection is still open with a third held")
		}
		for name, c := range map[string]*rawConn{"second": b, "third": c} {
			if closedWithin(c, 100*time.Millisecond) {
				t.Errorf("the %s connection was closed, want it held", name)
			}
		}
		if n := s.held.count(); n != 2 {
			t.Errorf("%d held, want 2", n)
		}
	})

	t.Run("close", func(t *testing.T) {
		fds := openFiles()
		s, addr, _ := server(t, time.Minute, 10)
		var conns []*rawConn
		for range 3 {
			conns = append(conns, cutOff(t, s, addr))
		}
		start := time.Now()
		s.Close()
		for i, c := range conns {
			if !closedWithin(c, 5*time.Second) {
				t.Fatalf("held connection %d still open after Close", i)
			}
			c.nc.Close()
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("held connections closed %s after Close, want at once", d)
		}
		if n := s.held.count(); n != 0 {
			t.Errorf("%d held after Close, want 0", n)
		}
		// A connection cut off after Close is not held.
		var tp tarpit
		tp.configure(time.Minute, 10, nil)
		tp.closeAll()
		p1, p2 := net.Pipe()
		defer p2.Close()
		tp.add(p1)
		if tp.count() != 0 {
			t.Error("a closed tarpit held a connection")
		}
		if fds >= 0 {
			// The listener, closed by Close, and the clients' ends are
			// gone too.
			if now := openFiles(); now > fds {
				t.Errorf("%d descriptors open before, %d after", fds, now)
			}
		}
	})
}
