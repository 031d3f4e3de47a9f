// Command h3load is a closed-loop HTTPS load generator for the TLS
// benchmarks: HTTP/3 (quic-go) or HTTP/2 (net/http), so both protocols are
// measured by the same client code. It prints one line of results.
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
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: h3load [flags] URL")
		os.Exit(2)
	}
	url := flag.Arg(0)
	tc := &tls.Config{InsecureSkipVerify: *insecure, ServerName: *host}

	clients := make([]*http.Client, *conns)
	for i := range clients {
		// One transport per connection: each holds one connection.
		var rt http.RoundTripper
		if *proto == "h3" {
			rt = &http3.Transport{TLSClientConfig: tc}
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
	elapsed := time.Since(measureFrom).Seconds()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	fmt.Printf("proto=%s req/s=%.0f MB/s=%.1f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
		*proto, float64(reqs.Load())/elapsed, float64(bytes.Load())/elapsed/1e6, pct(0.50), pct(0.99), errs.Load())
	for _, c := range clients {
		if t, ok := c.Transport.(*http3.Transport); ok {
			t.Close()
		}
	}
}
