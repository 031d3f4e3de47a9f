//go:build linux

package geodns

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/selfcdn/cdn/internal/procs"
)

// On Linux each UDP worker sleeps in recvmmsg itself, as gdnsd's threads
// do, on a blocking socket that Go's poller does not watch. Waiting in the
// poller costs, per wake-up, a recvmmsg that finds nothing, two
// epoll_pwait and a goroutine switch beside the recvmmsg and sendmmsg
// that do the work: five system calls where two do (docs/performance.md).
//
// The calls are raw (RawSyscall: the runtime is not told of them), so a
// waiting worker keeps its P, and the process gets one more P per worker
// for everything else (procs.Lend). Made the usual way, a call that
// outlasts sysmon's 20 µs tick lets sysmon hand the P to another thread,
// and waking that thread costs more than the poller saves. A worker
// that keeps its P must still stop when the runtime asks (a GC stopping
// the world or scanning its stack, sysmon's 10 ms preemption). The
// runtime asks by signal, which ends the wait with EINTR because the
// socket has a receive timeout (signal(7): recvmmsg on such a socket is
// never restarted), and the worker's next call yields at its entry (see
// mmsg). The timeout also ends every wait now and then, for a GODEBUG
// without preemption signals.

// sockTimeout is the socket's receive and send timeout: the longest a
// worker waits in one call. Tests raise it, so that only the wake-ups
// they test can end a wait.
var sockTimeout = 250 * time.Millisecond

// udpSocket is the server's UDP socket, out of Go's poller and blocking.
type udpSocket struct {
	fd      int
	stopped atomic.Bool
	workers int
	release func() // gives back the Ps lent for the workers
}

func openUDPSocket(pc net.PacketConn) (*udpSocket, error) {
	sc, ok := pc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("udp: %T has no file descriptor", pc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("udp: copy the socket: %w", derr)
	}
	// Closing pc takes its descriptor out of the poller, whose
	// edge-triggered watch would otherwise wake the poller's thread for
	// packets nobody waits for there; the copy keeps the socket open.
	pc.Close()
	tv := unix.NsecToTimeval(sockTimeout.Nanoseconds())
	for _, set := range []func() error{
		func() error { return unix.SetNonblock(fd, false) },
		func() error { return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv) },
		func() error { return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv) },
	} {
		if err := set(); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("udp: set up the socket: %w", err)
		}
	}
	n, release := procs.Lend()
	return &udpSocket{fd: fd, workers: n, release: release}, nil
}

// stop wakes every worker waiting in recvmmsg (shutdown of an unconnected
// socket says ENOTCONN but marks it shut and wakes its readers), and
// makes every read from now on return net.ErrClosed.
func (u *udpSocket) stop() {
	u.stopped.Store(true)
	unix.Shutdown(u.fd, unix.SHUT_RD)
}

// close frees the socket and the workers' Ps, once no worker uses them.
func (u *udpSocket) close() error {
	u.release()
	return os.NewSyscallError("close", unix.Close(u.fd))
}

// mmsgIO is one worker's recvmmsg and sendmmsg on the socket. It also
// reads the sender into a sockaddr we own instead of a new *net.UDPAddr
// per packet.
type mmsgIO struct {
	sock  *udpSocket
	in    []mmsghdr
	names []unix.RawSockaddrInet6 // each packet's sender, large enough for either family
	inIov []unix.Iovec
	out   []mmsghdr
	// outIov and outSlot are the iovec and packet of each response in out.
	outIov  []unix.Iovec
	outSlot []*udpPacket
}

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

func (u *udpSocket) batchIO(pkts []udpPacket) batchIO {
	n := len(pkts)
	m := &mmsgIO{sock: u, in: make([]mmsghdr, n), names: make([]unix.RawSockaddrInet6, n), inIov: make([]unix.Iovec, n),
		out: make([]mmsghdr, n), outIov: make([]unix.Iovec, n), outSlot: make([]*udpPacket, n)}
	for i := range pkts {
		m.inIov[i].Base = &pkts[i].buf[0]
		m.inIov[i].SetLen(len(pkts[i].buf))
		m.in[i].hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		m.in[i].hdr.Iov = &m.inIov[i]
		m.in[i].hdr.SetIovlen(1)
	}
	return m
}

// mmsg is recvmmsg or sendmmsg (trap) of n messages from msgs. It waits
// (for one packet at least, or for room) until the socket's timeout or a
// signal. It is never inlined: the check every Go function's entry makes
// is where the runtime's request to stop this goroutine takes effect, so
// each call after an interrupted one first lets the runtime have the P.
//
//go:noinline
func mmsg(trap uintptr, fd int, msgs *mmsghdr, n, flags int) (int, syscall.Errno) {
	r, _, e := unix.RawSyscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(msgs)), uintptr(n), uintptr(flags), 0, 0)
	return int(r), e
}

func (m *mmsgIO) read(pkts []udpPacket) (int, error) {
	for i := range pkts {
		m.in[i].hdr.Namelen = unix.SizeofSockaddrInet6 // in and out: the kernel writes the sender's length
	}
	for {
		if m.sock.stopped.Load() {
			return 0, net.ErrClosed
		}
		n, e := mmsg(unix.SYS_RECVMMSG, m.sock.fd, &m.in[0], len(pkts), unix.MSG_WAITFORONE)
		switch e {
		case 0:
		case unix.EINTR, unix.EAGAIN:
			continue
		default:
			return 0, os.NewSyscallError("recvmmsg", e)
		}
		if m.sock.stopped.Load() {
			return 0, net.ErrClosed // stop's wake-up reads as an empty datagram
		}
		for i := range n {
			pkts[i].n, pkts[i].src = int(m.in[i].len), sockaddrAddr(&m.names[i])
		}
		return n, nil
	}
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
	for first := 0; first < k; {
		n, e := mmsg(unix.SYS_SENDMMSG, m.sock.fd, &m.out[first], k-first, 0)
		switch e {
		case 0:
			first += max(n, 1) // a success sends at least one; never spin
		case unix.EINTR:
		default:
			// The message at first failed (EAGAIN: no room for the
			// timeout's length): skip it, not the rest of the batch.
			skip(m.outSlot[first], os.NewSyscallError("sendmmsg", e))
			first++
		}
	}
	clear(m.outSlot[:k]) // hold no packet past its batch
	return nil
}
