package edge

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestH2FloodCutOffByEdge: the edge's HTTP/2 server has the flood limits
// wired in: a rapid reset on h2c ends in GOAWAY ENHANCE_YOUR_CALM, counted
// in cdn_edge_h2_flood_closes_total, and a header block left unfinished
// is cut off after read_header_timeout, not idle_timeout.
func TestH2FloodCutOffByEdge(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "ok")
	})
	e := startEdge(t, o.URL, nil, func(c *Config) { c.ReadHeaderTimeout = 300 * time.Millisecond })
	dial := func() (net.Conn, *http2.Framer) {
		c, err := net.Dial("tcp", strings.TrimPrefix(e.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, http2.ClientPreface)
		fr := http2.NewFramer(c, c)
		fr.WriteSettings()
		return c, fr
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/a"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	goAway := func(fr *http2.Framer) (http2.ErrCode, time.Time) {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("no GOAWAY: %v", err)
			}
			if g, ok := f.(*http2.GoAwayFrame); ok {
				return g.ErrCode, time.Now()
			}
		}
	}

	_, fr := dial()
	go func(fr *http2.Framer) {
		for id := uint32(1); id < 100_000; id += 2 {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
			if fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}(fr)
	if code, _ := goAway(fr); code != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("rapid reset: GOAWAY %v, want ENHANCE_YOUR_CALM", code)
	}

	_, fr = dial()
	start := time.Now()
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes()[:2]})
	code, at := goAway(fr)
	if code != http2.ErrCodeEnhanceYourCalm || at.Sub(start) > 3*time.Second {
		t.Errorf("unfinished header block: GOAWAY %v after %s, want ENHANCE_YOUR_CALM after read_header_timeout", code, at.Sub(start))
	}
	if n := metricValue(t, e, "cdn_edge_h2_flood_closes_total"); n != 2 {
		t.Errorf("cdn_edge_h2_flood_closes_total = %v, want 2", n)
	}
}
