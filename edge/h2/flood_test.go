package h2

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/selfcdn/cdn/internal/syncbuf"
)

// floodAttack is one abuse a raw-frame client sends until the server
// stops it.
type floodAttack struct {
	name string
	// setup sends what comes once, before the rounds.
	setup func(c *rawConn)
	// round sends one round of frames for round i; nil: the client sends
	// nothing more and waits.
	round func(c *rawConn, i uint32)
	cause string
	// code is the GOAWAY's error code; 0: ENHANCE_YOUR_CALM.
	code http2.ErrCode
	// maxFrames bounds the frames the server reads before it cuts the
	// connection off.
	maxFrames int
}

var post = []string{":method", "POST", ":scheme", "http", ":path", "/", ":authority", "x"}

// floodAttacks are the attacks of issue 26, each as nginx stops it.
func floodAttacks() []floodAttack {
	getBlock := func(enc *hpack.Encoder, buf *bytes.Buffer) []byte {
		buf.Reset()
		for i := 0; i+1 < len(get); i += 2 {
			enc.WriteField(hpack.HeaderField{Name: get[i], Value: get[i+1]})
		}
		return bytes.Clone(buf.Bytes())
	}
	return []floodAttack{
		{
			// CVE-2023-44487.
			name: "rapid reset",
			round: func(c *rawConn, i uint32) {
				id := 2*i + 1
				c.headers(id, true, get...)
				c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
			},
			cause: "reset", maxFrames: 3 * 2 * 1000,
		},
		{
			// CVE-2024-27316 family: a header block that never ends.
			name: "empty CONTINUATION frames",
			setup: func(c *rawConn) {
				c.hbuf.Reset()
				c.henc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
				c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.hbuf.Bytes()})
			},
			round: func(c *rawConn, i uint32) { c.fr.WriteContinuation(1, false, nil) },
			cause: causeHeaderFrames, maxFrames: 100,
		},
		{
			// A block of CONTINUATIONs that decode to nothing still ends
			// at the encoded bound.
			name: "CONTINUATION frames of table size updates",
			setup: func(c *rawConn) {
				c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x20}})
			},
			round: func(c *rawConn, i uint32) { c.fr.WriteContinuation(1, false, bytes.Repeat([]byte{0x20}, 16<<10)) },
			cause: causeHeaderList, maxFrames: 10,
		},
		{
			// One 4 KiB table entry referenced 16,000 times a block.
			name: "HPACK bomb",
			setup: func(c *rawConn) {
				block := getBlock(c.henc, &c.hbuf)
				c.hbuf.Reset()
				c.henc.WriteField(hpack.HeaderField{Name: "x-bomb", Value: strings.Repeat("a", 4000)})
				c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: append(block, c.hbuf.Bytes()...), EndStream: true, EndHeaders: true})
			},
			round: func(c *rawConn, i uint32) {
				block := append(getBlock(c.henc, &c.hbuf), bytes.Repeat([]byte{0x80 | 62}, 16000)...)
				c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 3, BlockFragment: block, EndStream: true, EndHeaders: true})
			},
			cause: causeHeaderList, maxFrames: 3,
		},
		{
			// A string whose declared length is past the limit: the
			// decoder cannot go on (h2spec's hpack/5.2/3 sends one).
			name: "HPACK string declared past the limit",
			setup: func(c *rawConn) {
				block := append(getBlock(c.henc, &c.hbuf), 0x00, 0x01, 'a', 0x7f, 0xff, 0xff, 0xff, 0x0f)
				c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndStream: true, EndHeaders: true})
			},
			cause: causeHeaderList, code: http2.ErrCodeCompression, maxFrames: 3,
		},
		{
			// CVE-2019-9518.
			name:  "empty DATA frames",
			setup: func(c *rawConn) { c.headers(1, false, post...) },
			round: func(c *rawConn, i uint32) { c.fr.WriteData(1, false, nil) },
			cause: "empty_frame", maxFrames: 1000 + 10,
		},
		{
			// CVE-2019-9518.
			name: "empty HEADERS frames",
			round: func(c *rawConn, i uint32) {
				c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 1, EndStream: true, EndHeaders: true})
			},
			cause: "empty_frame", maxFrames: 1000,
		},
		{
			name:  "streams beyond the concurrency limit",
			round: func(c *rawConn, i uint32) { c.headers(2*i+1, false, post...) },
			cause: "refused", maxFrames: 100 + 1000/10 + 10,
		},
		{
			name:  "WINDOW_UPDATE +1",
			round: func(c *rawConn, i uint32) { c.fr.WriteWindowUpdate(0, 1) },
			cause: "window_update", maxFrames: 1000 + 10,
		},
		{
			name: "WINDOW_UPDATE +0 on a stream",
			setup: func(c *rawConn) {
				c.headers(1, false, post...)
				c.fr.AllowIllegalWrites = true // an increment of 0
			},
			round: func(c *rawConn, i uint32) { c.fr.WriteWindowUpdate(1, 0) },
			cause: "malformed", maxFrames: 1000 + 10,
		},
		{
			name:  "SETTINGS",
			round: func(c *rawConn, i uint32) { c.fr.WriteSettings() },
			cause: "control_frame", maxFrames: 100 + 1000 + 10,
		},
		{
			name:  "PING",
			round: func(c *rawConn, i uint32) { c.fr.WritePing(false, [8]byte{byte(i)}) },
			cause: "control_frame", maxFrames: 100 + 1000 + 10,
		},
		{
			name:  "PRIORITY",
			round: func(c *rawConn, i uint32) { c.fr.WritePriority(2*i+1, http2.PriorityParam{StreamDep: 0, Weight: 9}) },
			cause: "control_frame", maxFrames: 100 + 1000 + 10,
		},
		{
			name: "header block left unfinished",
			setup: func(c *rawConn) {
				c.hbuf.Reset()
				c.henc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
				c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.hbuf.Bytes()})
			},
			cause: causeHeaderTimeout, maxFrames: 2,
		},
	}
}

// floodServer serves handlers that answer GETs at once and hold POSTs
// until their stream ends; its log and metrics are the test's.
func floodServer(t *testing.T, opts ...func(*Server)) (*Server, string, *syncbuf.Buffer, *Metrics) {
	var logs syncbuf.Buffer
	m := NewMetrics(prometheus.NewRegistry())
	s := &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				<-r.Context().Done()
				return
			}
			io.WriteString(w, "ok")
		}),
		ReadHeaderTimeout: 300 * time.Millisecond,
		// Short, so an attacking connection ends soon after its GOAWAY
		// (TestCutOffHeld tests the hold).
		CutOffHold: 300 * time.Millisecond,
		Metrics:    m,
		Log:        slog.New(slog.NewTextHandler(&logs, nil)),
	}
	for _, o := range opts {
		o(s)
	}
	return s, serve(t, s), &logs, m
}

// attackResult is how the server ended one attacking connection.
type attackResult struct {
	goAway   *http2.GoAwayFrame // nil: none came
	goAwayAt time.Duration      // from the first frame to the GOAWAY
	closed   time.Duration      // from the first frame to the connection's end
	rounds   int                // rounds written before a write failed or the end
}

// runAttack sends a on a new connection until the server closes it or
// limit passes.
func runAttack(t *testing.T, addr string, a floodAttack, limit time.Duration) attackResult {
	c := dialRaw(t, addr)
	c.nc.SetDeadline(time.Now().Add(limit))
	start := time.Now()
	var stop atomic.Bool
	var rounds atomic.Int64
	written := make(chan struct{})
	go func() {
		defer close(written)
		if a.setup != nil {
			a.setup(c)
		}
		for i := uint32(0); a.round != nil && !stop.Load() && i < 1<<29; i++ {
			a.round(c, i)
			rounds.Add(1)
		}
	}()
	var res attackResult
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			break // closed, or limit passed
		}
		if g, ok := f.(*http2.GoAwayFrame); ok && res.goAway == nil {
			res.goAway = &http2.GoAwayFrame{LastStreamID: g.LastStreamID, ErrCode: g.ErrCode}
			res.goAwayAt = time.Since(start)
		}
	}
	res.closed = time.Since(start)
	stop.Store(true)
	c.nc.Close()
	<-written
	res.rounds = int(rounds.Load())
	return res
}

var framesLogged = regexp.MustCompile(`frames=(\d+)`)

// TestFloodCutOff: each attack ends with GOAWAY ENHANCE_YOUR_CALM within
// a bounded number of frames and time, and the connection's close once
// its hold is over; one log line naming the client, and the cause
// counted.
func TestFloodCutOff(t *testing.T) {
	for _, a := range floodAttacks() {
		t.Run(a.name, func(t *testing.T) {
			s, addr, logs, m := floodServer(t)
			res := runAttack(t, addr, a, 10*time.Second)
			code := cmp.Or(a.code, http2.ErrCodeEnhanceYourCalm)
			if res.goAway == nil || res.goAway.ErrCode != code {
				t.Fatalf("after %d rounds in %s: GOAWAY %+v, want %v", res.rounds, res.closed, res.goAway, code)
			}
			if res.goAwayAt > 5*time.Second {
				t.Errorf("GOAWAY after %s, want within 5s", res.goAwayAt)
			}
			if res.closed > res.goAwayAt+s.CutOffHold+5*time.Second {
				t.Errorf("closed after %s, GOAWAY after %s, want the close within the hold (%s) and 5s", res.closed, res.goAwayAt, s.CutOffHold)
			}
			if got := testutil.ToFloat64(m.floodCloses[a.cause]); got != 1 {
				t.Errorf("cdn_edge_h2_flood_closes_total{cause=%q} = %v, want 1; log: %s", a.cause, got, logs)
			}
			lines := slices.DeleteFunc(strings.Split(logs.String(), "\n"), func(l string) bool { return !strings.Contains(l, "cut off") })
			if len(lines) != 1 || !strings.Contains(lines[0], "remote=127.0.0.1:") || !strings.Contains(lines[0], "cause="+a.cause) {
				t.Fatalf("log lines %q, want one naming the client and cause %s", lines, a.cause)
			}
			frames, _ := strconv.Atoi(framesLogged.FindStringSubmatch(lines[0])[1])
			if frames > a.maxFrames {
				t.Errorf("cut off after %d frames, want at most %d", frames, a.maxFrames)
			}
			t.Logf("%s: cut off after %d frames, %s (closed after %s): %s", a.name, frames, res.goAwayAt.Round(time.Millisecond), res.closed.Round(time.Millisecond), lines[0])
		})
	}
}

// latency is the median of n sequential GETs over one h2c connection.
func latency(t *testing.T, c *http.Client, url string, n int) time.Duration {
	d := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		res, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// TestFloodNormalClient: while each attack runs again and again on new
// connections, a normal client on its own connection keeps its latency.
func TestFloodNormalClient(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every attack for a while")
	}
	// Cut-off connections are closed at once, not held: each attacker
	// reconnects at once, the worst case for the normal client.
	_, addr, _, m := floodServer(t, func(s *Server) { s.CutOffHold = -1 })
	c := h2cClient(t)
	url := "http://" + addr + "/"
	latency(t, c, url, 50) // warm
	base := latency(t, c, url, 300)
	for _, a := range floodAttacks() {
		if a.round == nil {
			continue // slow, not a flood
		}
		t.Run(a.name, func(t *testing.T) {
			before := testutil.ToFloat64(m.floodCloses[a.cause])
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var conns atomic.Int64
			for range 2 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						runAttack(t, addr, a, 5*time.Second)
						conns.Add(1)
					}
				})
			}
			during := latency(t, c, url, 300)
			close(stop)
			wg.Wait()
			cut := testutil.ToFloat64(m.floodCloses[a.cause]) - before
			t.Logf("median latency %s alone, %s during the attack (%d connections, %v cut off)", base, during, conns.Load(), cut)
			if cut < float64(conns.Load())-2 { // the last ones may have been stopped by the test
				t.Errorf("%v of %d attacking connections cut off", cut, conns.Load())
			}
			// Starved, the client waits on the attackers' frames for tens
			// of milliseconds and more; 2 ms was measured over (4.3 ms)
			// with other packages' -race tests sharing the 2 cores in CI.
			if limit := max(10*base, 10*time.Millisecond); during > limit {
				t.Errorf("median latency %s during the attack, want at most %s (%s alone)", during, limit, base)
			}
		})
	}
}

// TestFloodCreditsResponses: a connection that resets some of its streams
// but has most answered in full is never cut off, however long it lives.
func TestFloodCreditsResponses(t *testing.T) {
	const budget = 1000
	_, addr, logs, _ := floodServer(t, func(s *Server) { s.FloodBudget = budget })
	c := dialRaw(t, addr)
	id := uint32(1)
	for i := range 3 * budget {
		c.headers(id, true, get...)
		if i%3 == 0 {
			c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		} else if _, err := c.expect("headers"); err != nil {
			t.Fatalf("request %d: %v; log: %s", i, err, logs)
		}
		id += 2
	}
	c.fr.WritePing(false, [8]byte{7})
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("%v; log: %s", err, logs)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			t.Fatalf("GOAWAY %v after %d streams", g.ErrCode, id/2)
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
			break
		}
	}
	if strings.Contains(logs.String(), "cut off") {
		t.Errorf("cut off: %s", logs)
	}
}

// TestSlowHeaderBlockNotIdleTimeout: an unfinished header block is bounded
// by ReadHeaderTimeout even while other streams are open and the idle
// timeout is long.
func TestSlowHeaderBlockNotIdleTimeout(t *testing.T) {
	s, addr, _, _ := floodServer(t, func(s *Server) { s.IdleTimeout = time.Minute })
	c := dialRaw(t, addr)
	c.headers(1, false, post...) // an open stream: no idle deadline applies
	c.hbuf.Reset()
	c.henc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: c.hbuf.Bytes()})
	start := time.Now()
	f, err := c.expect("goaway")
	if err != nil {
		t.Fatal(err)
	}
	if code := f.(*http2.GoAwayFrame).ErrCode; code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", code)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cut off after %s, ReadHeaderTimeout %s", d, s.ReadHeaderTimeout)
	}
	if _, err := io.Copy(io.Discard, c.nc); err != nil && !errors.Is(err, io.EOF) {
		t.Logf("after GOAWAY: %v", err)
	}
}
