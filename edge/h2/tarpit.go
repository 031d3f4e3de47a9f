package h2

import (
	"container/list"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A connection cut off for a flood is held, not closed: its GOAWAY has
// gone out, nothing more is read from it or written to it, and its socket
// stays open for Server.CutOffHold. A flood client that keeps writing
// (the GOAWAY is one frame among those it ignores) fills the TCP window
// and blocks there, instead of learning of the close within a millisecond
// and reconnecting. Closing at once turned each flood into connection
// churn of 300-4,700 new connections a second, each costing the edge its
// accept, setup and first thousand frames: more CPU than nginx, which
// lets a flood run longer before it cuts (docs/performance.md, issue 26).
//
// A held socket costs a descriptor and what the kernel has queued on it
// (bounded by the receive buffer, which does not grow while unread), no
// goroutine and no CPU. At most Server.MaxHeld are held at once, the
// oldest closed first; Shutdown and Close close every one at once. The
// peer closing its end is not noticed: that takes a read, which is what
// holding avoids; the hold is bounded in time and count instead.

// tarpit is the set of held connections. The zero value holds none
// (every connection given to it is closed at once) until hold and max
// are set.
type tarpit struct {
	hold  time.Duration    // how long a connection is held; <= 0: not held
	max   int              // how many are held at most
	gauge prometheus.Gauge // how many are held now; nil: not measured

	// mu protects every field here and each heldConn's elem. It is taken
	// with no other lock held (conn.mu and Server.mu are released first),
	// and connections are closed outside it.
	mu     sync.Mutex
	order  list.List // of *heldConn, oldest first (they all hold as long)
	closed bool      // the server shut down: nothing more is held
}

// heldConn is one held connection.
type heldConn struct {
	nc    net.Conn
	elem  *list.Element // in tarpit.order; nil once released
	timer *time.Timer
}

// configure sets how long and how many connections are held, before the
// first is.
func (tp *tarpit) configure(hold time.Duration, max int, m *Metrics) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.hold, tp.max = hold, max
	if m != nil {
		tp.gauge = m.held
	}
}

// add holds nc for tp.hold, or closes it at once when holding is off or
// the server is closing. When tp is full, the oldest held connection is
// closed to make room.
func (tp *tarpit) add(nc net.Conn) {
	if t, ok := nc.(*tls.Conn); ok {
		// Closed without a close_notify alert: writing one to a client
		// that may not read could block its closer for a write timeout.
		nc = t.NetConn()
	}
	tp.mu.Lock()
	if tp.closed || tp.hold <= 0 || tp.max <= 0 {
		tp.mu.Unlock()
		nc.Close()
		return
	}
	var evicted net.Conn
	if tp.order.Len() >= tp.max {
		evicted = tp.removeLocked(tp.order.Front().Value.(*heldConn))
	}
	h := &heldConn{nc: nc}
	h.elem = tp.order.PushBack(h)
	// The timer's function takes mu, so it sees h.timer set.
	h.timer = time.AfterFunc(tp.hold, func() { tp.release(h) })
	tp.measureLocked()
	tp.mu.Unlock()
	if evicted != nil {
		evicted.Close()
	}
}

// release closes h when its hold is over, unless something closed it
// first.
func (tp *tarpit) release(h *heldConn) {
	tp.mu.Lock()
	nc := tp.removeLocked(h)
	tp.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
}

// removeLocked takes h out of the set and returns its connection for the
// caller to close (outside mu), or nil if it was already taken out.
func (tp *tarpit) removeLocked(h *heldConn) net.Conn {
	if h.elem == nil {
		return nil
	}
	tp.order.Remove(h.elem)
	h.elem = nil
	h.timer.Stop()
	tp.measureLocked()
	return h.nc
}

func (tp *tarpit) measureLocked() {
	if tp.gauge != nil {
		tp.gauge.Set(float64(tp.order.Len()))
	}
}

// closeAll closes every held connection and holds none from now on.
func (tp *tarpit) closeAll() {
	tp.mu.Lock()
	tp.closed = true
	var ncs []net.Conn
	for e := tp.order.Front(); e != nil; {
		next := e.Next()
		ncs = append(ncs, tp.removeLocked(e.Value.(*heldConn)))
		e = next
	}
	tp.mu.Unlock()
	for _, nc := range ncs {
		nc.Close()
	}
}

// count is how many connections are held.
func (tp *tarpit) count() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.order.Len()
}
