package edge

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSlowOriginStreamsToClients: a slow origin body (server-sent events,
// a long poll) reaches HTTP/1.1 and h2c clients as it arrives, and an
// origin that stalls after its header still gets its header to the client
// (issue 20).
func TestSlowOriginStreamsToClients(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Path == "/stall" {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-release
			return
		}
		if r.URL.Path == "/sized" {
			w.Header().Set("Content-Length", "20")
		}
		for i := range 2 {
			fmt.Fprintf(w, "data: event %d\n\n", i) // 16 bytes; /sized promises 20
			w.(http.Flusher).Flush()
			select {
			case <-release:
				return
			case <-time.After(3 * time.Second):
			}
		}
	})
	// After the origin's own cleanup is registered: it runs first, and
	// waits for the handlers this releases.
	t.Cleanup(func() { close(release) })
	e := startEdge(t, o.URL, nil, nil)
	for _, proto := range []struct {
		name   string
		client *http.Client
	}{{"h1", &http.Client{}}, {"h2c", h2cClient(t)}} {
		for _, path := range []string{"/events", "/sized"} {
			t.Run(proto.name+path, func(t *testing.T) {
				start := time.Now()
				res, err := proto.client.Get(e.URL + path)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				line, err := bufio.NewReader(res.Body).ReadString('\n')
				if err != nil || line != "data: event 0\n" {
					t.Fatalf("first line %q, %v", line, err)
				}
				if took := time.Since(start); took > time.Second {
					t.Errorf("the first event reached the client after %s; the origin sent it at once", took)
				}
			})
		}
		t.Run(proto.name+"/stall", func(t *testing.T) {
			start := time.Now()
			res, err := proto.client.Get(e.URL + "/stall")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if took := time.Since(start); took > time.Second || res.StatusCode != 200 {
				t.Errorf("header of a stalled body: %d after %s, want 200 at once", res.StatusCode, took)
			}
		})
	}
}

// TestOriginEndsShort: an origin that promises more body than it sends
// gives the client what came, then a cut connection, never a clean end.
func TestOriginEndsShort(t *testing.T) {
	o := newRawOrigin(t, func(w *bufio.Writer, _ string) {
		w.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nCache-Control: max-age=60\r\nConnection: close\r\n\r\nonly this")
	})
	e := startEdge(t, o.URL, nil, nil)
	for _, proto := range []struct {
		name   string
		client *http.Client
	}{{"h1", &http.Client{}}, {"h2c", h2cClient(t)}} {
		t.Run(proto.name, func(t *testing.T) {
			res, err := proto.client.Get(e.URL + "/short-" + proto.name + "/close")
			if err != nil && proto.name == "h2c" {
				// The stream was reset before its buffered HEADERS and
				// DATA went out: an error, never a clean end.
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			if err == nil {
				t.Errorf("body %q read to a clean end; want the connection cut", b)
			}
			if !strings.HasPrefix("only this", string(b)) {
				t.Errorf("body %q, want a prefix of what the origin sent", b)
			}
		})
	}
}
