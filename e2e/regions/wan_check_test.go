package regions

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

// TestWAN checks the simulated WAN itself: a TCP handshake between two
// regions takes about their round trip, and a cut region is unreachable.
func TestWAN(t *testing.T) {
	w, err := newWAN(fmt.Sprintf("%s%d", nsPrefix, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	eu, ap := regions[0], regions[2]
	var ln net.Listener
	if err := inNS(w.nsName(ap, "dc"), func() (err error) { ln, err = net.Listen("tcp", addr(ap, hostOrigin)+":9999"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	dial := func() (time.Duration, error) {
		var d time.Duration
		err := inNS(w.nsName(eu, "cl"), func() error {
			start := time.Now()
			c, err := net.DialTimeout("tcp", addr(ap, hostOrigin)+":9999", 2*time.Second)
			if err != nil {
				return err
			}
			d = time.Since(start)
			return c.Close()
		})
		return d, err
	}
	// The best of three: the WAN loses 0.1 % of packets (lossRate), and a
	// lost SYN costs a handshake its 1 s retransmission.
	d := time.Hour
	for range 3 {
		one, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		d = min(d, one)
	}
	t.Logf("TCP handshake eu client -> ap, best of 3: %v (RTT %v)", d, rtt("eu", "ap"))
	if d < rtt("eu", "ap")-5*time.Millisecond || d > rtt("eu", "ap")+50*time.Millisecond {
		t.Errorf("handshake took %v, want about %v", d, rtt("eu", "ap"))
	}
	w.cutOff("ap")
	if _, err := dial(); err == nil {
		t.Errorf("dial into a cut region succeeded")
	}
	w.restore("ap")
	if _, err := dial(); err != nil {
		t.Errorf("dial after restore: %v", err)
	}
}
