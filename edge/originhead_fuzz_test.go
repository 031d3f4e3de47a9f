package edge

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/edge/freshness"
	"github.com/selfcdn/cdn/internal/cachekey"
	"github.com/selfcdn/cdn/purge"
)

// FuzzOriginHead feeds raw origin response heads, as a hostile origin
// could send them, through what the edge does with one before storing it:
// Go's parser, then the header sent to clients and stored (clientHeader),
// the Vary names, the purge tags and the storage decision. Properties:
// nothing panics; no hop-by-hop field, Age or purge tag header reaches
// clients; Vary names are canonical and sorted; a stored response has a
// lifetime that is not negative.
func FuzzOriginHead(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nCache-Control: s-maxage=10, max-age=0\r\nVary: accept-encoding, *\r\nAge: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nExpires: Thu, 01 Jan 1970 00:00:00 GMT\r\nExpires: garbage\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n",
		"HTTP/1.1 301 Moved\r\nLocation: /x\r\nConnection: X-Secret, close\r\nX-Secret: 1\r\nSurrogate-Key: a b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nCDN-Cache-Control: max-age=\"1\r\nAge: -1\r\nAge: 3, 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 206 Partial\r\nContent-Range: bytes 0-1/2\r\nCache-Tag: x,y\r\nLast-Modified: yesterday\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	h := &Handler{via: "1.1 fuzz"}
	sent := time.Now()
	f.Fuzz(func(t *testing.T, raw []byte) {
		res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
		if err != nil {
			return // Go's transport refuses it: the edge answers 502
		}
		hdr := h.clientHeader(res.Header)
		for _, k := range append(append([]string{"Age"}, hopByHop...), purge.TagHeaders...) {
			if _, ok := hdr[k]; ok {
				t.Fatalf("%s reached the client header: %q", k, hdr[k])
			}
		}
		for _, v := range res.Header["Connection"] {
			for f := range strings.SplitSeq(v, ",") {
				if k := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(f)); k != "" && hdr[k] != nil {
					t.Fatalf("%s, named by Connection, reached the client header", k)
				}
			}
		}
		vary, _ := cachekey.ParseVary(hdr)
		for i, n := range vary {
			if n == "" || i > 0 && vary[i-1] >= n {
				t.Fatalf("Vary names %q: not canonical, sorted and distinct", vary)
			}
		}
		purge.Tags(res.Header)
		d := freshness.Evaluate(http.Header{}, res.StatusCode, res.Header, sent, sent.Add(time.Millisecond), freshness.Policy{})
		if d.Store && d.Meta.Age(sent) < 0 {
			t.Fatalf("stored with a negative age: %+v", d.Meta)
		}
	})
}
