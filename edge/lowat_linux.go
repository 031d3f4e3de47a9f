package edge

import (
	"net"

	"golang.org/x/sys/unix"
)

// setNotSentLowat caps the bytes a connection may queue in the kernel
// before they are sent (TCP_NOTSENT_LOWAT). A large body then goes out in
// turns with the other connections' instead of one burst per connection,
// which is what the receiving side handles best, and unlike a small
// SO_SNDBUF it does not limit the bytes in flight on long links. Best
// effort: a connection keeps the kernel's default if it fails.
func setNotSentLowat(c net.Conn, n int) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, n) })
	}
}
