package regions

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The simulated WAN. This machine's kernel has no netem
// (CONFIG_NET_SCH_NETEM is not set, and neither is prio), so instead of
// `tc netem` on veth pairs, every namespace gets a TUN device and this
// process carries IPv4 packets between them: each packet is delayed by
// half the round trip between its source's and destination's regions,
// with jitter, and a few are lost. Cutting a region drops every packet
// to or from it, as a broken WAN link does (connections hang, then time
// out; nothing is refused).

// region is one place of the network: hosts in 10.77.N.0/24 (its data
// centre namespace) and clients in 10.78.N.0/24 (their own namespace).
type region struct {
	name     string
	n        int
	lat, lon float64
}

var regions = []region{
	{"eu", 1, 50.1, 8.7},   // Frankfurt
	{"us", 2, 40.7, -74.0}, // New York
	{"ap", 3, 1.35, 103.8}, // Singapore
}

// rtt is the round trip between two regions, after CockroachDB's
// multi-region test matrix; ordered like the distances, so the nearest
// region by coordinates is also the nearest by latency.
func rtt(a, b string) time.Duration {
	if a == b {
		return 2 * time.Millisecond
	}
	switch a + b {
	case "euus", "useu":
		return 64 * time.Millisecond
	case "euap", "apeu":
		return 86 * time.Millisecond
	default:
		return 132 * time.Millisecond
	}
}

const (
	jitter   = 2 * time.Millisecond // ± on each one-way delay
	lossRate = 0.001                // of inter-region packets
)

// host addresses in a region's data centre namespace.
func addr(r region, host int) string { return fmt.Sprintf("10.77.%d.%d", r.n, host) }

// clientAddr is the address of the region's client namespace.
func clientAddr(r region) string { return fmt.Sprintf("10.78.%d.2", r.n) }

// Hosts of each data centre.
const (
	hostNATS    = 10
	hostControl = 11
	hostGeoDNS  = 12
	hostEdge1   = 21
	hostEdge2   = 22
	hostOrigin  = 30
	hostSpare   = 40 // a node or edge started by a bad-input test
)

// wan is the set of namespaces and the packet carrier between them.
type wan struct {
	prefix string
	ends   map[[3]byte]*tunEnd // by the first three bytes of an address
	cut    sync.Map            // region name -> struct{} while cut off
	closed atomic.Bool
	wg     sync.WaitGroup
	// Packets counts what was carried, dropped by a cut and lost.
	carried, cutDrops, lost atomic.Int64
}

// tunEnd is one namespace's TUN device, seen from the carrier.
type tunEnd struct {
	ns     string
	region string
	dc     bool // the region's data centre, not its clients
	f      *os.File
}

// nsName is the namespace of a region's data centre ("dc") or clients.
func (w *wan) nsName(r region, kind string) string { return w.prefix + "-" + kind + "-" + r.name }

// newWAN makes a namespace per region's data centre and per region's
// clients, each with a TUN device "wan0" routed to the carrier.
func newWAN(prefix string) (*wan, error) {
	w := &wan{prefix: prefix, ends: map[[3]byte]*tunEnd{}}
	for _, r := range regions {
		for _, kind := range []string{"dc", "cl"} {
			ns := w.nsName(r, kind)
			var addrs []string
			net3 := [3]byte{10, 77, byte(r.n)}
			if kind == "cl" {
				addrs, net3 = []string{clientAddr(r)}, [3]byte{10, 78, byte(r.n)}
			} else {
				for _, h := range []int{hostNATS, hostControl, hostGeoDNS, hostEdge1, hostEdge2, hostOrigin, hostSpare} {
					addrs = append(addrs, addr(r, h))
				}
			}
			end, err := w.addNamespace(ns, r.name, addrs)
			if err != nil {
				w.close()
				return nil, err
			}
			end.dc = kind == "dc"
			w.ends[net3] = end
		}
	}
	for _, e := range w.ends {
		w.wg.Go(func() { w.carry(e) })
	}
	return w, nil
}

func (w *wan) addNamespace(ns, region string, addrs []string) (*tunEnd, error) {
	if err := ip("netns", "add", ns); err != nil {
		return nil, err
	}
	f, err := openTUN(ns, "wan0")
	if err != nil {
		return nil, err
	}
	end := &tunEnd{ns: ns, region: region, f: f}
	cmds := [][]string{
		{"-n", ns, "link", "set", "dev", "lo", "up"},
		{"-n", ns, "link", "set", "dev", "wan0", "mtu", "1400", "up"},
	}
	for _, a := range addrs {
		cmds = append(cmds, []string{"-n", ns, "addr", "add", a + "/32", "dev", "wan0"})
	}
	cmds = append(cmds, []string{"-n", ns, "route", "add", "10.0.0.0/8", "dev", "wan0"})
	for _, c := range cmds {
		if err := ip(c...); err != nil {
			f.Close()
			return nil, err
		}
	}
	return end, nil
}

// carry reads packets from e and sends each on after its delay.
func (w *wan) carry(e *tunEnd) {
	buf := make([]byte, 65536)
	for {
		n, err := e.f.Read(buf)
		if err != nil {
			return // closed
		}
		pkt := buf[:n]
		if n < 20 || pkt[0]>>4 != 4 {
			continue // IPv4 only; the namespaces' IPv6 chatter goes nowhere
		}
		dst := w.ends[[3]byte{pkt[16], pkt[17], pkt[18]}]
		if dst == nil {
			continue
		}
		// A cut region's data centre is off the WAN: its own users,
		// out on the internet, cannot reach it either.
		if (e.dc && w.isCut(e.region)) || (dst.dc && w.isCut(dst.region)) {
			w.cutDrops.Add(1)
			continue
		}
		if e.region != dst.region && rand.Float64() < lossRate {
			w.lost.Add(1)
			continue
		}
		delay := rtt(e.region, dst.region)/2 + time.Duration((rand.Float64()*2-1)*float64(jitter))
		cp := append([]byte(nil), pkt...)
		w.carried.Add(1)
		time.AfterFunc(delay, func() {
			if !w.closed.Load() {
				dst.f.Write(cp)
			}
		})
	}
}

func (w *wan) isCut(region string) bool { _, ok := w.cut.Load(region); return ok }

// cutOff drops every packet to and from the region's data centre,
// until restore.
func (w *wan) cutOff(region string)  { w.cut.Store(region, struct{}{}) }
func (w *wan) restore(region string) { w.cut.Delete(region) }

// close stops carrying and removes every namespace (which kills
// nothing: processes are the cluster's to stop first).
func (w *wan) close() {
	w.closed.Store(true)
	for _, e := range w.ends {
		e.f.Close()
	}
	w.wg.Wait()
	for _, r := range regions {
		for _, kind := range []string{"dc", "cl"} {
			ip("netns", "del", w.nsName(r, kind))
		}
	}
}

// sweep removes what a crashed earlier run left: namespaces named with
// prefix whose run (the pid after the prefix) is gone, and any process
// still inside them (only ours live there).
func sweep(prefix string) {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for line := range strings.Lines(string(out)) {
		ns, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(ns, prefix)
		if !ok {
			continue
		}
		pid, _, _ := strings.Cut(rest, "-")
		if pid == fmt.Sprint(os.Getpid()) {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); err == nil {
			continue // a run still going
		}
		pids, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for p := range strings.FieldsSeq(string(pids)) {
			var n int
			if _, err := fmt.Sscan(p, &n); err == nil {
				unix.Kill(n, unix.SIGKILL)
			}
		}
		ip("netns", "del", ns)
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// inNS runs f on an OS thread inside namespace ns (sockets f opens stay
// there), then puts the thread back; a thread that cannot go back dies
// with its goroutine rather than serve others from the wrong namespace.
func inNS(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// openTUN creates TUN device name inside namespace ns.
func openTUN(ns, name string) (*os.File, error) {
	var f *os.File
	err := inNS(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		var req [unix.IFNAMSIZ + 64]byte
		copy(req[:], name)
		*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TUN | unix.IFF_NO_PI
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
			unix.Close(fd)
			return fmt.Errorf("create tun %s in %s: %w", name, ns, errno)
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return err
		}
		f = os.NewFile(uintptr(fd), "/dev/net/tun:"+ns)
		return nil
	})
	return f, err
}

// regionOf is the region an address is in.
func regionOf(a netip.Addr) (region, error) {
	b := a.As4()
	for _, r := range regions {
		if b[0] == 10 && (b[1] == 77 || b[1] == 78) && int(b[2]) == r.n {
			return r, nil
		}
	}
	return region{}, errors.New("no region for " + a.String())
}
