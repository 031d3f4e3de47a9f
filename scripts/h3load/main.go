// Command h3load is a closed-loop HTTPS load generator for the TLS
// benchmarks: HTTP/3 (quic-go) or HTTP/2 (net/http), so both protocols are
// measured by the same client code. It prints one line of results, with
// its own CPU use (user+system over the measured time, 1.00 = one core
// busy) so a run can tell when the client, not the server, was the limit.
//
// Its QUIC receive windows (-window) start large enough for a 1 MiB body
// not to wait for a MAX_STREAM_DATA: the client's windows, not the
// server's, bound how fast a server can send it.
//
//	h3load -proto h3 -c 16 -d 10s -k https://127.0.0.1:8443/1k.bin
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

func main() {
	proto := flag.String("proto", "h3", "h3 or h2")
	conns := flag.Int("c", 16, "connections")
	streams := flag.Int("m", 1, "concurrent requests per connection")
	dur := flag.Duration("d", 10*time.Second, "duration")
	warm := flag.Duration("warmup", time.Second, "warm-up, not counted")
	insecure := flag.Bool("k", false, "skip certificate verification")
	host := flag.String("host", "", "Host (and SNI) to send; default the URL's")
	gro := flag.Bool("gro", true, "h3: read with UDP_GRO (see gro.go)")
	cpuProfile := flag.String("cpuprofile", "", "write the client's CPU profile of the measured time to this file")
	window := flag.Int("window", 4<<20, "QUIC initial stream receive window, bytes (the connection's is 4 times it); 0 leaves quic-go's")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: h3load [flags] URL")
		os.Exit(2)
	}
	url := flag.Arg(0)
	tc := &tls.Config{InsecureSkipVerify: *insecure, ServerName: *host}

	dialer := &groDialer{}
	defer dialer.close()
	clients := make([]*http.Client, *conns)
	for i := range clients {
		// One transport per connection: each holds one connection.
		var rt http.RoundTripper
		if *proto == "h3" {
			t := &http3.Transport{TLSClientConfig: tc, QUICConfig: quicConfig(*window)}
			if *gro {
				t.Dial = dialer.dial
			}
			rt = t
		} else {
			var p http.Protocols
			p.SetHTTP2(true)
			rt = &http.Transport{TLSClientConfig: tc, Protocols: &p, MaxConnsPerHost: 1}
		}
		clients[i] = &http.Client{Transport: rt, Timeout: 30 * time.Second}
	}

	ctx, cancel := context.WithTimeout(context.Background(), *warm+*dur)
	defer cancel()
	start := time.Now()
	measureFrom := start.Add(*warm)
	cpuFrom := make(chan float64, 1)
	stopProfile := make(chan func(), 1)
	time.AfterFunc(*warm, func() {
		cpuFrom <- cpuSeconds()
		stopProfile <- startProfile(*cpuProfile)
	})
	var reqs, bytes, errs atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	for _, c := range clients {
		for range *streams {
			wg.Go(func() {
				var mine []time.Duration
				buf := make([]byte, 64<<10)
				for ctx.Err() == nil {
					t0 := time.Now()
					req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
					if *host != "" {
						req.Host = *host
					}
					res, err := c.Do(req)
					if err != nil {
						if ctx.Err() == nil {
							errs.Add(1)
						}
						continue
					}
					var n int64
					for {
						k, err := res.Body.Read(buf)
						n += int64(k)
						if err != nil {
							if err != io.EOF && ctx.Err() == nil {
								errs.Add(1)
							}
							break
						}
					}
					res.Body.Close()
					if t0.After(measureFrom) && ctx.Err() == nil {
						reqs.Add(1)
						bytes.Add(n)
						mine = append(mine, time.Since(t0))
					}
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	(<-stopProfile)()
	elapsed := time.Since(measureFrom).Seconds()
	cpu := (cpuSeconds() - <-cpuFrom) / elapsed
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	fmt.Printf("proto=%s req/s=%.0f MB/s=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d cpu=%.2f\n",
		*proto, float64(reqs.Load())/elapsed, float64(bytes.Load())/elapsed/1e6, pct(0.50), pct(0.99), errs.Load(), cpu)
	for _, c := range clients {
		if t, ok := c.Transport.(*http3.Transport); ok {
			t.Close()
		}
	}
}

// quicConfig sets the receive windows (0: quic-go's defaults, which start
// a stream at 512 KiB and grow it as the transfer goes).
func quicConfig(window int) *quic.Config {
	if window <= 0 {
		return nil
	}
	return &quic.Config{
		InitialStreamReceiveWindow:     uint64(window),
		MaxStreamReceiveWindow:         uint64(4 * window),
		InitialConnectionReceiveWindow: uint64(4 * window),
		MaxConnectionReceiveWindow:     uint64(16 * window),
	}
}

// cpuSeconds is the user and system CPU time this process used so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// startProfile starts a CPU profile into path (none when path is empty)
// and returns what stops it.
func startProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "h3load: cpu profile:", err)
		if f != nil {
			f.Close()
		}
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
