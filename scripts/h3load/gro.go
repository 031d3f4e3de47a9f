//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// groConn is a client UDP socket with UDP_GRO on (Linux 5.0+): the
// datagrams a server's GSO call carried come as one read, with their
// segment size, and on loopback the kernel queues them as one buffer
// instead of splitting them in the server's sendmsg. quic-go reads one
// packet at a time and does not ask for GRO itself, so ReadFrom splits
// them again. It is not an OOBCapablePacketConn on purpose: quic-go would
// then read the socket's descriptor with recvmmsg behind its back.
type groConn struct {
	udp *net.UDPConn
	buf []byte // what the last read brought
	oob []byte

	// Only quic-go's one reading goroutine touches these.
	pending []byte // datagrams of the last read still to hand out
	segment int
	from    net.Addr
}

func listenGRO() (*groConn, error) {
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("listen udp: %w", err)
	}
	rc, err := udp.SyscallConn()
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("udp socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	}); err != nil || serr != nil {
		udp.Close()
		return nil, fmt.Errorf("turn on UDP_GRO: %v %v", err, serr)
	}
	return &groConn{udp: udp, buf: make([]byte, 1<<16), oob: make([]byte, 128)}, nil
}

func (c *groConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if len(c.pending) == 0 {
		n, oobn, _, from, err := c.udp.ReadMsgUDP(c.buf, c.oob)
		if err != nil {
			return 0, nil, err
		}
		c.pending, c.from, c.segment = c.buf[:n], from, n
		if s := groSegment(c.oob[:oobn]); s > 0 {
			c.segment = s
		}
	}
	k := min(c.segment, len(c.pending))
	n := copy(p, c.pending[:k])
	c.pending = c.pending[k:]
	return n, c.from, nil
}

// groSegment is the segment size of a UDP_GRO control message in oob, or 0.
func groSegment(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == unix.IPPROTO_UDP && m.Header.Type == unix.UDP_GRO && len(m.Data) >= 4 {
			return int(int32(binary.NativeEndian.Uint32(m.Data)))
		}
	}
	return 0
}

func (c *groConn) WriteTo(p []byte, addr net.Addr) (int, error) { return c.udp.WriteTo(p, addr) }
func (c *groConn) Close() error                                 { return c.udp.Close() }
func (c *groConn) LocalAddr() net.Addr                          { return c.udp.LocalAddr() }
func (c *groConn) SetDeadline(t time.Time) error                { return c.udp.SetDeadline(t) }
func (c *groConn) SetReadDeadline(t time.Time) error            { return c.udp.SetReadDeadline(t) }
func (c *groConn) SetWriteDeadline(t time.Time) error           { return c.udp.SetWriteDeadline(t) }

// SetReadBuffer, SetWriteBuffer and SyscallConn let quic-go size the
// socket's buffers and set the DF bit (for path MTU discovery).
func (c *groConn) SetReadBuffer(n int) error             { return c.udp.SetReadBuffer(n) }
func (c *groConn) SetWriteBuffer(n int) error            { return c.udp.SetWriteBuffer(n) }
func (c *groConn) SyscallConn() (syscall.RawConn, error) { return c.udp.SyscallConn() }

// groDialer dials each QUIC connection from its own GRO socket, and
// closes them all at the end.
type groDialer struct {
	mu         sync.Mutex // protects transports
	transports []*quic.Transport
}

func (d *groDialer) dial(ctx context.Context, addr string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := listenGRO()
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: c}
	d.mu.Lock()
	d.transports = append(d.transports, tr)
	d.mu.Unlock()
	return tr.DialEarly(ctx, raddr, tc, qc)
}

func (d *groDialer) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, tr := range d.transports {
		tr.Close()
	}
}
