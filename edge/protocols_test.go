package edge

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/selfcdn/cdn/internal/testwait"
)

// h2cClient speaks HTTP/2 with prior knowledge over cleartext.
func h2cClient(t *testing.T) *http.Client {
	t.Helper()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestProtocolsShareOneCache fetches the same objects over HTTP/1.1 and
// h2c from one listener and checks that both see the same cache: a fill
// through one is a hit through the other, with the same bytes.
func TestProtocolsShareOneCache(t *testing.T) {
	big := strings.Repeat("0123456789", 300_000) // 3 MB: above max_object, streamed
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("ETag", `"p1"`)
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			io.WriteString(w, big)
		default:
			fmt.Fprintf(w, "object %s", r.URL.Path)
		}
	})
	e := startEdge(t, o.URL, nil, nil)
	clients := map[string]*http.Client{"h1": http.DefaultClient, "h2c": h2cClient(t)}
	do := func(t *testing.T, proto, path string, hdr http.Header) (*http.Response, string) {
		t.Helper()
		res, body := getWith(t, clients[proto], "GET", e.URL+path, hdr)
		wantMajor := map[string]int{"h1": 1, "h2c": 2}[proto]
		if res.ProtoMajor != wantMajor {
			t.Errorf("%s GET %s answered over HTTP/%d", proto, path, res.ProtoMajor)
		}
		return res, body
	}
	tests := []struct {
		name, fillWith, readWith string
	}{
		{name: "fill h1, hit h2c", fillWith: "h1", readWith: "h2c"},
		{name: "fill h2c, hit h1", fillWith: "h2c", readWith: "h1"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := fmt.Sprintf("/o%d", i)
			res, body := do(t, tt.fillWith, path, nil)
			if cacheResult(res.Header.Get("Cache-Status")) != "miss" || body != "object "+path {
				t.Fatalf("fill: %q %q", res.Header.Get("Cache-Status"), body)
			}
			// The fill's client may see its response end a moment before
			// the fill has stored it; a read in that moment joins the fill
			// ("collapsed") and gets the same bytes, then reads hit.
			var res2 *http.Response
			var got string
			testwait.Until(t, "a hit over "+tt.readWith, func() bool {
				res2, got = do(t, tt.readWith, path, nil)
				if r := cacheResult(res2.Header.Get("Cache-Status")); r != "hit" && r != "collapsed" || got != body {
					t.Fatalf("read: %q %q, want a hit (or a join of the fill) with %q", res2.Header.Get("Cache-Status"), got, body)
				}
				return cacheResult(res2.Header.Get("Cache-Status")) == "hit"
			})
			res, got = do(t, tt.readWith, path, http.Header{"Range": {"bytes=0-5"}})
			if res.StatusCode != 206 || got != "object" {
				t.Errorf("range: %d %q, want 206 \"object\"", res.StatusCode, got)
			}
			res, _ = do(t, tt.readWith, path, http.Header{"If-None-Match": {`"p1"`}})
			if res.StatusCode != 304 {
				t.Errorf("conditional: %d, want 304", res.StatusCode)
			}
		})
	}
	for _, proto := range []string{"h1", "h2c"} {
		t.Run("streamed large body over "+proto, func(t *testing.T) {
			res, got := do(t, proto, "/big", nil)
			if sha256.Sum256([]byte(got)) != sha256.Sum256([]byte(big)) || res.Header.Get("Content-Length") != fmt.Sprint(len(big)) {
				t.Errorf("body of %d bytes (Content-Length %q), want the origin's %d", len(got), res.Header.Get("Content-Length"), len(big))
			}
		})
	}
	if o.hits.Load() != 4 { // /o0, /o1, and /big twice (too large to keep)
		t.Errorf("origin requests = %d, want 4", o.hits.Load())
	}
}

// TestPlainPathMatchesNetHTTP checks that the HTTP/1.1 fast path takes only
// paths net/http escapes to themselves, so both fronts build one key.
func TestPlainPathMatchesNetHTTP(t *testing.T) {
	for _, p := range []string{"/", "/a/b.css", "/a%2Fb", "/%7euser", "/x;v=1", "/a(1)!*'", "/a b", "/a{b}", "/a%zz", "/a%", "/é", "/a|b", "/a^b", `/a"b`} {
		u, err := url.ParseRequestURI(p)
		same := err == nil && u.EscapedPath() == p
		if got := plainPath([]byte(p)); got && !same {
			t.Errorf("plainPath(%q) = true, but net/http makes it %q (err %v)", p, u.EscapedPath(), err)
		}
	}
	for _, p := range []string{"/", "/a/b.css", "/a%2Fb", "/x;v=1"} {
		if !plainPath([]byte(p)) {
			t.Errorf("plainPath(%q) = false, want the fast path for it", p)
		}
	}
}
