//go:build linux

package geodns

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsgIO calls recvmmsg and sendmmsg itself, as raw system calls on the
// non-blocking socket (waiting for it in Go's poller, as net does).
// Raw, because a system call made the usual way marks the goroutine's P
// as in a syscall, and the runtime's sysmon thread hands such a P to
// another thread when the call outlasts its 20 µs tick (a sendmmsg of a
// batch does): with one P (geodns pinned to one CPU) that handoff woke a
// thread on every batch, and sysmon ran at its fastest tick the whole
// time, 18 % of the server's CPU in a perf profile at 20,000 queries/s
// (docs/performance.md). Neither call blocks: MSG_DONTWAIT, and EAGAIN
// goes back to the poller. It also reads the sender into a sockaddr we
// own instead of a new *net.UDPAddr per packet.
type mmsgIO struct {
	rc    syscall.RawConn
	in    []mmsghdr
	names []unix.RawSockaddrInet6 // each packet's sender, large enough for either family
	inIov []unix.Iovec
	out   []mmsghdr
	// outIov and outSlot are the iovec and packet of each response in out.
	outIov  []unix.Iovec
	outSlot []*udpPacket

	// The calls, made once: a closure made per call would be allocated
	// per batch. They read their arguments from and leave their results
	// in the fields below, which only the worker's goroutine touches.
	recvFn, sendFn func(fd uintptr) bool
	count          int // recvmmsg: how many to read; sendmmsg: how many to send from first
	first          int
	done           int // how many were read or sent
	errno          syscall.Errno
}

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

func newBatchIO(pc net.PacketConn, pkts []udpPacket) (batchIO, error) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("udp: %T has no file descriptor", pc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	n := len(pkts)
	m := &mmsgIO{rc: rc, in: make([]mmsghdr, n), names: make([]unix.RawSockaddrInet6, n), inIov: make([]unix.Iovec, n),
		out: make([]mmsghdr, n), outIov: make([]unix.Iovec, n), outSlot: make([]*udpPacket, n)}
	for i := range pkts {
		m.inIov[i].Base = &pkts[i].buf[0]
		m.inIov[i].SetLen(len(pkts[i].buf))
		m.in[i].hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		m.in[i].hdr.Iov = &m.inIov[i]
		m.in[i].hdr.SetIovlen(1)
	}
	m.recvFn, m.sendFn = m.recv, m.send
	return m, nil
}

// recv is recvmmsg of m.count packets, for RawConn.Read. It always
// tries before it lets Read wait: Read forgets a readiness the poller
// saw before the call, so waiting on the belief that the socket was
// empty at the last read can sleep through packets already queued
// (TestRateLimit caught that with two workers).
func (m *mmsgIO) recv(fd uintptr) bool {
	r, e := rawMmsg(unix.SYS_RECVMMSG, fd, &m.in[0], m.count)
	if e == unix.EAGAIN {
		return false // nothing there: wait for the socket in the poller
	}
	m.done, m.errno = int(r), e
	return true
}

// send is sendmmsg of out[m.first:m.count], for RawConn.Write.
func (m *mmsgIO) send(fd uintptr) bool {
	r, e := rawMmsg(unix.SYS_SENDMMSG, fd, &m.out[m.first], m.count-m.first)
	if e == unix.EAGAIN {
		return false // the send buffer is full: wait for room
	}
	m.done, m.errno = int(r), e
	return true
}

// rawMmsg is recvmmsg or sendmmsg (trap) of n messages from msgs, not
// waiting (MSG_DONTWAIT), made again when a signal interrupts it.
func rawMmsg(trap, fd uintptr, msgs *mmsghdr, n int) (uintptr, syscall.Errno) {
	for {
		r, _, e := unix.RawSyscall6(trap, fd, uintptr(unsafe.Pointer(msgs)), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EINTR {
			return r, e
		}
	}
}

func (m *mmsgIO) read(pkts []udpPacket) (int, error) {
	for i := range pkts {
		m.in[i].hdr.Namelen = unix.SizeofSockaddrInet6 // in and out: the kernel writes the sender's length
	}
	m.count = len(pkts)
	if err := m.rc.Read(m.recvFn); err != nil {
		return 0, err
	}
	if m.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", m.errno)
	}
	n := m.done
	for i := range n {
		pkts[i].n, pkts[i].src = int(m.in[i].len), sockaddrAddr(&m.names[i])
	}
	return n, nil
}

// sockaddrAddr is the address of a sockaddr_in or sockaddr_in6.
func sockaddrAddr(sa *unix.RawSockaddrInet6) netip.Addr {
	if sa.Family == unix.AF_INET {
		return netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(sa)).Addr)
	}
	return netip.AddrFrom16(sa.Addr).Unmap()
}

func (m *mmsgIO) write(pkts []udpPacket, skip func(*udpPacket, error)) error {
	k := 0
	for i := range pkts {
		p := &pkts[i]
		if len(p.resp) == 0 {
			continue
		}
		m.outIov[k].Base = &p.resp[0]
		m.outIov[k].SetLen(len(p.resp))
		// The response goes back to where the query came from.
		m.out[k].hdr = unix.Msghdr{Name: m.in[i].hdr.Name, Namelen: m.in[i].hdr.Namelen, Iov: &m.outIov[k]}
		m.out[k].hdr.SetIovlen(1)
		m.outSlot[k] = p
		k++
	}
	m.count = k
	for m.first = 0; m.first < k; {
		if err := m.rc.Write(m.sendFn); err != nil {
			return err
		}
		if m.errno != 0 {
			// The message at first failed: skip it, not the rest of the batch.
			skip(m.outSlot[m.first], os.NewSyscallError("sendmmsg", m.errno))
			m.first++
			continue
		}
		m.first += max(m.done, 1) // a success sends at least one; never spin
	}
	clear(m.outSlot[:k]) // hold no packet past its batch
	return nil
}
