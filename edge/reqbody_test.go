package edge

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/testwait"
)

// post sends a POST with body and declared length to url through c and
// returns the status, or 0 and the error text.
func post(c *http.Client, url string, body io.Reader, length int64) (int, string) {
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		return 0, err.Error()
	}
	req.ContentLength = length
	res, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// echoOrigin answers a POST with the length of the body it read and
// whether it came with a Content-Length.
func echoOrigin(t *testing.T) *countingOrigin {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "read %d, content-length %d", n, r.ContentLength)
	})
}

// TestPendingBodiesHoldNoOrigin: POSTs over HTTP/2 and HTTP/3 whose
// bodies never come reach no origin and get 408 after body_timeout; a
// small body that comes slowly reaches the origin whole, with its
// Content-Length.
func TestPendingBodiesHoldNoOrigin(t *testing.T) {
	o := echoOrigin(t)
	e := startTLSEdge(t, o.URL, func(c *Config) { c.BodyTimeout = 500 * time.Millisecond })
	for _, proto := range []string{"h2", "h3"} {
		t.Run(proto, func(t *testing.T) {
			c := e.client(t, proto)
			url := e.url("www.example.test", "/form")
			before := o.hits.Load()
			var wg sync.WaitGroup
			statuses := make([]int, 20)
			for i := range statuses {
				pr, pw := io.Pipe()
				t.Cleanup(func() { pw.Close() })
				wg.Go(func() { statuses[i], _ = post(c, url, pr, 100) })
			}
			wg.Wait()
			for i, s := range statuses {
				if s != http.StatusRequestTimeout {
					t.Errorf("pending body %d: status %d, want 408", i, s)
				}
			}
			if n := o.hits.Load() - before; n != 0 {
				t.Errorf("the origin got %d requests for bodies that never came", n)
			}

			// A body in slow pieces, within body_timeout, arrives whole.
			pr, pw := io.Pipe()
			go func() {
				for range 4 {
					time.Sleep(50 * time.Millisecond)
					io.WriteString(pw, strings.Repeat("x", 1000))
				}
				pw.Close()
			}()
			status, body := post(c, url, pr, -1)
			if status != 200 || body != "read 4000, content-length 4000" {
				t.Errorf("slow small body: %d %q, want 200 and the whole body with its length", status, body)
			}
		})
	}
}

// TestStreamingBodiesCapped: bodies larger than body_buffer stream to the
// origin, at most max_streaming_bodies at once; one more waits for a
// slot and gets 503 after body_timeout.
func TestStreamingBodiesCapped(t *testing.T) {
	o := echoOrigin(t)
	e := startTLSEdge(t, o.URL, func(c *Config) {
		c.BodyBuffer = 1 << 10
		c.BodyTimeout = 500 * time.Millisecond
		c.MaxStreamingBodies = 2
	})
	c := e.client(t, "h2")
	url := e.url("www.example.test", "/upload")
	chunk := strings.Repeat("y", 2<<10)
	type result struct {
		status int
		body   string
	}
	var writers []*io.PipeWriter
	results := make(chan result, 2)
	for range 2 {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		go func() {
			s, b := post(c, url, pr, 4<<10)
			results <- result{s, b}
		}()
		go io.WriteString(pw, chunk) // half, then nothing until told
	}
	testwait.Until(t, "two large bodies streaming to the origin", func() bool { return o.hits.Load() == 2 })
	pr, pw := io.Pipe()
	go io.WriteString(pw, chunk)
	if s, b := post(c, url, pr, 4<<10); s != http.StatusServiceUnavailable {
		t.Errorf("a third large body: %d %q, want 503 while two stream", s, b)
	}
	pw.Close()
	for _, w := range writers {
		io.WriteString(w, chunk)
		w.Close()
	}
	for range 2 {
		r := testwait.Recv(t, "a streamed body's answer", results)
		if r.status != 200 || r.body != "read 4096, content-length 4096" {
			t.Errorf("streamed body: %d %q", r.status, r.body)
		}
	}
	if s, b := post(c, url, strings.NewReader(chunk+chunk), 4<<10); s != 200 {
		t.Errorf("a large body once the slots are free: %d %q", s, b)
	}
}
