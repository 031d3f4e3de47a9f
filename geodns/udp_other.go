//go:build !linux

package geodns

import (
	"net"
	"runtime"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// msgIO is the portable batch loop: x/net's ReadBatch and WriteBatch
// (recvmmsg and sendmmsg where the system has them, one packet a call
// elsewhere).
type msgIO struct {
	bc       batchConn
	in, out  []ipv4.Message
	outSlots []*udpPacket
	addrs    []net.Addr // each packet's sender, for its response
}

// batchConn is the batch interface of ipv4.PacketConn and ipv6.PacketConn
// (their Message types are one type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// udpSocket is the server's socket as net gives it: its workers wait in
// Go's poller, one per P.
type udpSocket struct {
	pc      net.PacketConn
	workers int
}

func openUDPSocket(pc net.PacketConn) (*udpSocket, error) {
	return &udpSocket{pc: pc, workers: runtime.GOMAXPROCS(0)}, nil
}

// stop makes every worker's read return net.ErrClosed.
func (u *udpSocket) stop() { u.pc.Close() }

func (u *udpSocket) close() error { return nil }

func (u *udpSocket) batchIO(pkts []udpPacket) batchIO {
	var bc batchConn = ipv6.NewPacketConn(u.pc)
	if a, ok := u.pc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		bc = ipv4.NewPacketConn(u.pc)
	}
	m := &msgIO{bc: bc, in: make([]ipv4.Message, len(pkts)), out: make([]ipv4.Message, len(pkts)),
		outSlots: make([]*udpPacket, len(pkts)), addrs: make([]net.Addr, len(pkts))}
	for i := range pkts {
		m.in[i].Buffers = [][]byte{pkts[i].buf}
		m.out[i].Buffers = [][]byte{nil}
	}
	return m
}

func (m *msgIO) read(pkts []udpPacket) (int, error) {
	n, err := m.bc.ReadBatch(m.in[:len(pkts)], 0)
	for i := range n {
		pkts[i].n, pkts[i].src, m.addrs[i] = m.in[i].N, addrOf(m.in[i].Addr), m.in[i].Addr
	}
	return n, err
}

func (m *msgIO) write(pkts []udpPacket, skip func(*udpPacket, error)) error {
	k := 0
	for i := range pkts {
		if pkts[i].resp == nil {
			continue
		}
		m.out[k].Buffers[0], m.out[k].Addr, m.outSlots[k] = pkts[i].resp, m.addrs[i], &pkts[i]
		k++
	}
	for sent := 0; sent < k; {
		n, err := m.bc.WriteBatch(m.out[sent:k], 0)
		sent += max(n, 0)
		if err != nil {
			// The message at sent failed: skip it, not the rest of the batch.
			skip(m.outSlots[sent], err)
			sent++
		}
	}
	return nil
}
