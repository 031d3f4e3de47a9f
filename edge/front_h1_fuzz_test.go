package edge

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzServeH1 feeds raw HTTP/1.1 requests, as a client could send them,
// through the HTTP/1.1 front: fasthttp parses them, then the hit path or
// the bridge to the net/http handler answers. Every request must get a
// well-formed response with a Cache-Status, and a hit must carry the
// stored body unchanged.
func FuzzServeH1(f *testing.F) {
	for _, s := range []string{
		"GET /obj HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"HEAD /obj HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"GET /obj?b=2&a=1 HTTP/1.1\r\nHost: A.TEST:80\r\nCache-Control: max-age=0\r\n\r\n",
		"GET /obj HTTP/1.1\r\nHost: a.test\r\nRange: bytes=0-3,5-\r\nIf-None-Match: \"x\"\r\n\r\n",
		"GET /%2e%2e/obj HTTP/1.1\r\nHost: a.test\r\nAccept-Encoding: gzip;q=0\r\n\r\n",
		"POST /obj HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc",
		"GET http://other.test/obj HTTP/1.1\r\nHost: a.test\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	const body = "stored body"
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("ETag", `"x"`)
		w.Header().Set("Vary", "Accept-Encoding")
		w.Write([]byte(body))
	}))
	defer o.Close()
	cfg := DefaultConfig()
	cfg.AccessLog = false
	cfg.Sites = []SiteConfig{{Name: "s", Hosts: []string{"a.test"}, Origin: o.URL}}
	srv, err := New(cfg, Deps{})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.handler
	f.Cleanup(h.closeBackground)
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}

	f.Fuzz(func(t *testing.T, raw []byte) {
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
			return // fasthttp refuses it before the edge sees it
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, remote, nil)
		h.serveH1(&ctx)
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		if err := ctx.Response.Write(bw); err != nil {
			// A cut-off stream is a deliberate abort; anything else is a bug.
			if ctx.Response.StatusCode() != 0 && !bytes.Contains([]byte(err.Error()), []byte("aborted")) {
				t.Fatalf("write response to %q: %v", raw, err)
			}
			return
		}
		bw.Flush()
		res, err := http.ReadResponse(bufio.NewReader(&out), nil)
		if err != nil {
			t.Fatalf("response to %q does not parse: %v\n%s", raw, err, out.Bytes())
		}
		if res.Header.Get("Cache-Status") == "" {
			t.Errorf("response to %q has no Cache-Status", raw)
		}
		if res.Header.Get("Cache-Status") == "edge; hit" && res.StatusCode == 200 && !ctx.IsHead() {
			got := new(bytes.Buffer)
			got.ReadFrom(res.Body)
			if got.String() != body {
				t.Errorf("hit for %q served %q, want %q", raw, got, body)
			}
		}
	})
}
