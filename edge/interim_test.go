package edge

import (
	"bufio"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestInterimResponsesForwarded: the origin's 103 Early Hints and 102
// reach the client before the final answer over HTTP/1.1, HTTP/2 and
// HTTP/3, on a miss and on a pass; a later hit has none (never stored).
func TestInterimResponsesForwarded(t *testing.T) {
	o := newRawOrigin(t, func(w *bufio.Writer, path string) {
		w.WriteString("HTTP/1.1 102 Processing\r\n\r\n")
		w.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\n\r\n")
		w.WriteString("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok")
	})
	e := startTLSEdge(t, o.URL, nil)
	for _, proto := range []string{"h1", "h2", "h3"} {
		t.Run(proto, func(t *testing.T) {
			c := e.client(t, proto)
			for _, tt := range []struct {
				method, path string
				want         []int
			}{
				{method: "GET", path: "/hints-" + proto, want: []int{102, 103}},
				{method: "GET", path: "/hints-" + proto, want: nil}, // a hit
				{method: "POST", path: "/pass-" + proto, want: []int{102, 103}},
			} {
				var mu sync.Mutex
				var got []int
				var link string
				trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
					mu.Lock()
					defer mu.Unlock()
					got = append(got, code)
					if code == 103 {
						link = h.Get("Link")
					}
					return nil
				}}
				req, _ := http.NewRequest(tt.method, e.url("www.example.test", tt.path), strings.NewReader(""))
				req = req.WithContext(httptrace.WithClientTrace(t.Context(), trace))
				res, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				mu.Lock()
				if res.StatusCode != 200 || !slices.Equal(got, tt.want) {
					t.Errorf("%s %s: %d after 1xx %v, want 200 after %v", tt.method, tt.path, res.StatusCode, got, tt.want)
				}
				if len(tt.want) > 0 && link != "</style.css>; rel=preload; as=style" {
					t.Errorf("%s %s: 103 Link %q", tt.method, tt.path, link)
				}
				mu.Unlock()
				if res.Header.Get("Link") != "" {
					t.Errorf("%s %s: the final answer inherited the hint's Link", tt.method, tt.path)
				}
			}
		})
	}
}
