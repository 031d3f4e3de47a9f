package edge

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/selfcdn/cdn/internal/cachekey"
)

// recordingOrigin answers every request with its own URI and keeps what it
// was asked, so a test can see what reached the origin.
type recordingOrigin struct {
	*countingOrigin
	mu   sync.Mutex // protects seen
	seen []*http.Request
}

func newRecordingOrigin(t *testing.T) *recordingOrigin {
	o := &recordingOrigin{}
	o.countingOrigin = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.seen = append(o.seen, r.Clone(r.Context()))
		o.mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte("answer for " + r.URL.RequestURI() + " override=" + r.Header.Get("X-Http-Method-Override")))
	})
	return o
}

func (o *recordingOrigin) lastSeen() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.seen) == 0 {
		return nil
	}
	return o.seen[len(o.seen)-1]
}

// TestOriginSeesOnlyKeyedInput: whatever the origin gets from a client's
// request either is in the cache key or was set by the edge (issue 20).
func TestOriginSeesOnlyKeyedInput(t *testing.T) {
	o := newRecordingOrigin(t)
	e := startEdge(t, o.URL, nil, nil)
	hdr := http.Header{
		"Forwarded":              {"for=6.6.6.6;host=evil.test;proto=https"},
		"X-Original-Url":         {"/admin"},
		"X-Rewrite-Url":          {"/admin"},
		"X-Http-Method-Override": {"DELETE"},
		"X-Http-Method":          {"DELETE"},
		"X-Method-Override":      {"DELETE"},
		"X-Forwarded-Scheme":     {"https"},
		"X-Forwarded-Port":       {"8443"},
	}
	for _, proto := range []struct {
		name   string
		client *http.Client
	}{{"h1", http.DefaultClient}, {"h2c", h2cClient(t)}} {
		t.Run(proto.name, func(t *testing.T) {
			res, _ := getWith(t, proto.client, "GET", e.URL+"/page-"+proto.name, hdr)
			if res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			got := o.lastSeen()
			for _, k := range cachekey.OverrideHeaders {
				if v := got.Header.Values(k); len(v) > 0 {
					t.Errorf("origin got %s: %q, want it removed", k, v)
				}
			}
			fwd := got.Header.Values("Forwarded")
			want := `for=127.0.0.1;proto=http;host="` + strings.TrimPrefix(e.URL, "http://") + `"`
			if len(fwd) != 1 || fwd[0] != want {
				t.Errorf("origin got Forwarded %q, want only the edge's %q", fwd, want)
			}
		})
	}
}

// TestPassHeadersJoinTheKey: a header a site passes to its origin keys
// the answer, so one client's value never answers another's request.
func TestPassHeadersJoinTheKey(t *testing.T) {
	o := newRecordingOrigin(t)
	e := startEdge(t, o.URL, nil, func(c *Config) {
		c.Sites[0].CacheKey.PassHeaders = []string{"x-http-method-override"}
	})
	ask := func(v string) string {
		hdr := http.Header{}
		if v != "" {
			hdr.Set("X-Http-Method-Override", v)
		}
		_, body := get(t, "GET", e.URL+"/thing", hdr)
		return body
	}
	if got := ask("PATCH"); !strings.HasSuffix(got, "override=PATCH") {
		t.Fatalf("first answer %q, want the origin to see PATCH", got)
	}
	if got := ask(""); !strings.HasSuffix(got, "override=") {
		t.Errorf("a request without the header got %q: another client's answer", got)
	}
	if got := ask("PATCH"); !strings.HasSuffix(got, "override=PATCH") {
		t.Errorf("PATCH again: %q", got)
	}
	if n := o.hits.Load(); n != 2 {
		t.Errorf("origin fetches = %d, want 2 (one per header value; the repeat is a hit)", n)
	}
}

// TestUpstreamURLIsTheKey: the origin is asked for the URL the key names:
// ignored parameters left out, parameters sorted by name with a repeated
// name's values in their order, dot segments resolved.
func TestUpstreamURLIsTheKey(t *testing.T) {
	o := newRecordingOrigin(t)
	e := startEdge(t, o.URL, nil, func(c *Config) {
		c.Sites[0].CacheKey.IgnoreParams = []string{"utm_*"}
	})
	tests := []struct {
		name, uri, wantUpstream string
		wantFetch               bool
	}{
		{name: "ignored params", uri: "/p?utm_source=mail&id=7&utm_medium=x", wantUpstream: "/p?id=7", wantFetch: true},
		{name: "same key, other tracking values", uri: "/p?id=7&utm_source=web", wantFetch: false},
		{name: "sorted by name", uri: "/q?b=1&a=1", wantUpstream: "/q?a=1&b=1", wantFetch: true},
		{name: "same key in another order", uri: "/q?a=1&b=1", wantFetch: false},
		{name: "repeated name keeps its order", uri: "/r?a=2&a=1", wantUpstream: "/r?a=2&a=1", wantFetch: true},
		{name: "the other order is another key", uri: "/r?a=1&a=2", wantUpstream: "/r?a=1&a=2", wantFetch: true},
		{name: "dot segments", uri: "/x/../s", wantUpstream: "/s", wantFetch: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := o.hits.Load()
			req, _ := http.NewRequest("GET", e.URL+"/", nil)
			req.URL.Opaque = tt.uri // sent as is, dot segments included
			if i := strings.IndexByte(tt.uri, '?'); i >= 0 {
				req.URL.Opaque, req.URL.RawQuery = tt.uri[:i], tt.uri[i+1:]
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			fetched := o.hits.Load() > before
			if fetched != tt.wantFetch {
				t.Fatalf("GET %s: origin fetched = %v, want %v", tt.uri, fetched, tt.wantFetch)
			}
			if tt.wantFetch {
				if got := o.lastSeen().URL.RequestURI(); got != tt.wantUpstream {
					t.Errorf("GET %s: origin asked for %s, want %s", tt.uri, got, tt.wantUpstream)
				}
			}
		})
	}
}

func TestPassHeadersValidate(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		wantErr string
	}{
		{name: "an override header", headers: []string{"X-HTTP-Method-Override"}},
		{name: "any case", headers: []string{"x-original-url"}},
		{name: "not a header name", headers: []string{"X Bad"}, wantErr: "not a header name"},
		{name: "a header the edge passes anyway", headers: []string{"Cookie"}, wantErr: "not one the edge removes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cachekey.Rules{PassHeaders: tt.headers}.Validate()
			if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate(%q) = %v, want %q", tt.headers, err, tt.wantErr)
			}
		})
	}
}
