//go:build linux

package geodns

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// waitLong makes the UDP workers' waits end only by what wakes them: a
// stop, a packet, a signal from the runtime.
func waitLong(t *testing.T) {
	old := sockTimeout
	sockTimeout = time.Hour
	t.Cleanup(func() { sockTimeout = old })
}

// serveOnce serves testConfig on loopback, with its UDP workers in their
// loop: a UDP query has been answered.
func serveOnce(t *testing.T) (addr string, stop func()) {
	t.Helper()
	r := start(t, testConfig(t), Deps{})
	ask(t, r.addr, "udp", query("www.cdn.test.", dns.TypeA, ""))
	return r.addr, r.stop
}

// Stopping wakes the workers waiting in recvmmsg: Serve returns although
// no wait would end by itself. The runtime's preemption signals would end
// a wait within about 10 ms too, so the test runs again in a process of
// its own without them (and without GC, which would wait for the workers
// as long).
func TestUDPStopWakesWorkers(t *testing.T) {
	if os.Getenv("GEODNS_NO_PREEMPT") == "" {
		// Bounded: a worker that is never woken holds its P, and the
		// first stop of the world then waits for it for good.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestUDPStopWakesWorkers$", "-test.count=1")
		cmd.Env = append(os.Environ(), "GEODNS_NO_PREEMPT=1", "GODEBUG=asyncpreemptoff=1", "GOGC=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("without preemption signals: %v\n%s", err, out)
		}
	}
	waitLong(t)
	for range 5 {
		_, stop := serveOnce(t)
		time.Sleep(20 * time.Millisecond) // the workers back in recvmmsg
		stop()
	}
}

// A worker waiting in recvmmsg keeps its P; when the runtime needs every
// P (a GC stops the world, scans the worker's stack), its signal must end
// the wait. Were recvmmsg restarted after the signal, the GC would wait
// for a packet (and the test hang until go test's timeout: a world
// stopped for a GC runs no test code).
func TestUDPWorkersYieldToGC(t *testing.T) {
	waitLong(t)
	addr, _ := serveOnce(t)
	for range 20 {
		time.Sleep(5 * time.Millisecond)
		done := make(chan struct{})
		go func() {
			runtime.GC()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a GC has waited 5 s for the UDP workers")
		}
	}
	if r := ask(t, addr, "udp", query("www.cdn.test.", dns.TypeA, "")); len(r.Answer) == 0 {
		t.Fatal("no answer after the GCs")
	}
}

// Each server's workers get Ps of their own, and give them back.
func TestUDPWorkersReserveProcs(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	_, stopA := serveOnce(t)
	if got := runtime.GOMAXPROCS(0); got != 2*base {
		t.Errorf("GOMAXPROCS with one server = %d, want %d", got, 2*base)
	}
	_, stopB := serveOnce(t)
	if got := runtime.GOMAXPROCS(0); got != 3*base {
		t.Errorf("GOMAXPROCS with two servers = %d, want %d", got, 3*base)
	}
	stopA()
	stopB()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Errorf("GOMAXPROCS after both stopped = %d, want %d", got, base)
	}
}
