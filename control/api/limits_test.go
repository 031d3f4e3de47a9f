package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/selfcdn/cdn/internal/natstest"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/push"
)

// startLimited is startAPI with abuse limits and a body limit of maxBody.
func startLimited(t *testing.T, l Limits, maxBody int64) (*testAPI, *API) {
	t.Helper()
	srv := natstest.Start(t, "", "")
	store, err := state.Open(t.Context(), natstest.Connect(t, srv.URL), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ta := &testAPI{store: store, clock: &clock, progress: NewProgress(), nats: srv}
	a := New(store, ta.progress, slog.New(slog.DiscardHandler), func() time.Time { return *ta.clock }, maxBody, 1<<20)
	a.RateLimited = NewRateLimitedMetric()
	a.SetLimits(l)
	h := httptest.NewServer(a)
	t.Cleanup(h.Close)
	ta.url = h.URL
	return ta, a
}

// TestHostCollision: a site cannot take a host another site has (409
// naming that site); a site keeps its own hosts, and an exact host under
// another site's wildcard is no collision.
func TestHostCollision(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	for _, body := range []string{
		`{"name":"a","hosts":["a.example.com","*.wild.example.com","*"],"origin":"http://127.0.0.1:9000"}`,
		`{"name":"c","hosts":["c.example.com"],"origin":"http://127.0.0.1:9000"}`,
	} {
		if code, v := a.do(t, "POST", "/v1/sites", admin, body); code != 201 {
			t.Fatalf("create: %d %v", code, v)
		}
	}
	site := func(name string, hosts ...string) string {
		return fmt.Sprintf(`{"name":%q,"hosts":["%s"],"origin":"http://127.0.0.1:9000"}`, name, strings.Join(hosts, `","`))
	}
	tests := []struct {
		name, method, path, body string
		want                     int
		wantSite                 string // the site a 409 names
	}{
		{name: "same exact host", method: "PUT", path: "/v1/sites/b", body: site("b", "b.example.com", "a.example.com"), want: 409, wantSite: "a"},
		{name: "same exact host, created", method: "POST", path: "/v1/sites", body: site("b", "a.example.com"), want: 409, wantSite: "a"},
		{name: "identical wildcard", method: "PUT", path: "/v1/sites/b", body: site("b", "*.wild.example.com"), want: 409, wantSite: "a"},
		{name: "second catch-all", method: "PUT", path: "/v1/sites/b", body: site("b", "*"), want: 409, wantSite: "a"},
		{name: "another site's host on an existing site", method: "PUT", path: "/v1/sites/c", body: site("c", "c.example.com", "a.example.com"), want: 409, wantSite: "a"},
		{name: "exact host under a wildcard", method: "PUT", path: "/v1/sites/b", body: site("b", "x.wild.example.com"), want: 200},
		{name: "a site re-put with its own hosts", method: "PUT", path: "/v1/sites/a", body: site("a", "a.example.com", "*.wild.example.com", "*"), want: 200},
		{name: "a site moved to a free host", method: "PUT", path: "/v1/sites/c", body: site("c", "c2.example.com"), want: 200},
		{name: "the host it left is free", method: "PUT", path: "/v1/sites/d", body: site("d", "c.example.com"), want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, v := a.do(t, tt.method, tt.path, admin, tt.body)
			if code != tt.want || v["site"] != nil && v["site"] != tt.wantSite {
				t.Fatalf("%s %s = %d %v, want %d", tt.method, tt.path, code, v, tt.want)
			}
			if tt.want == 409 && !strings.Contains(errMessage(v), fmt.Sprintf("site %q", tt.wantSite)) {
				t.Errorf("409 message %q does not name site %q", errMessage(v), tt.wantSite)
			}
		})
	}
	// A refused write left the site as it was.
	if _, v := a.do(t, "GET", "/v1/sites/c", admin, ""); fmt.Sprint(v["hosts"]) != "[c2.example.com]" {
		t.Errorf("site c after a refused write: hosts %v, want [c2.example.com]", v["hosts"])
	}
}

// TestTokenScopeSites: a token cannot be minted for a site that does not
// exist, and a refusal stores nothing.
func TestTokenScopeSites(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	a.do(t, "POST", "/v1/sites", admin, siteA)
	tests := []struct {
		name, scopes string
		want         int
		mention      string
	}{
		{name: "purge scope, no such site", scopes: `["purge:ghost"]`, want: 422, mention: "purge:ghost"},
		{name: "push scope, no such site", scopes: `["push:ghost"]`, want: 422, mention: "push:ghost"},
		{name: "one good scope, one missing site", scopes: `["purge:a","push:ghost"]`, want: 422, mention: "push:ghost"},
		{name: "scopes of a site that exists", scopes: `["purge:a","push:a","read"]`, want: 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, v := a.do(t, "POST", "/v1/tokens", admin, `{"name":"ci","scopes":`+tt.scopes+`}`)
			if code != tt.want || !strings.Contains(errMessage(v), tt.mention) {
				t.Errorf("mint %s = %d %q, want %d mentioning %q", tt.scopes, code, errMessage(v), tt.want, tt.mention)
			}
		})
	}
	if tokens, err := a.store.Tokens(t.Context()); err != nil || len(tokens) != 2 {
		t.Errorf("tokens stored = %d (%v), want 2: the admin and the one good mint", len(tokens), err)
	}
}

// TestWriteRateLimit: a token past its burst gets 429 with Retry-After and
// is counted; reads, blob uploads and other tokens go on; the bucket
// refills with time.
func TestWriteRateLimit(t *testing.T) {
	a, api := startLimited(t, Limits{WriteRate: 1, WriteBurst: 3}, 1<<20)
	admin := a.token(t, 0, ScopeAdmin)
	purgeA := a.token(t, 0, "purge:a")
	pushA := a.token(t, 0, "push:a")
	if code, v := a.do(t, "POST", "/v1/sites", admin, siteA); code != 201 {
		t.Fatalf("create site: %d %v", code, v)
	}
	purgeURL := func() string { return `{"urls":["/x"]}` }
	for i := range 3 {
		if code, v := a.do(t, "POST", "/v1/sites/a/purge", purgeA, purgeURL()); code != 202 {
			t.Fatalf("purge %d within the burst: %d %v", i+1, code, v)
		}
	}
	res := a.raw(t, "POST", "/v1/sites/a/purge", purgeA, purgeURL())
	if res.StatusCode != 429 || res.Header.Get("Retry-After") != "1" {
		t.Fatalf("purge past the burst: %d, Retry-After %q; want 429, 1", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if got := testutil.ToFloat64(api.RateLimited.WithLabelValues("purge")); got != 1 {
		t.Errorf(`cdn_control_rate_limited_total{scope="purge"} = %v, want 1`, got)
	}
	if code, _ := a.do(t, "GET", "/v1/purges/1", purgeA, ""); code != 200 {
		t.Errorf("a read by the limited token: %d, want 200", code)
	}
	if code, v := a.do(t, "POST", "/v1/sites/a/purge", admin, purgeURL()); code != 202 {
		t.Errorf("another token's write: %d %v, want 202", code, v)
	}
	for i := range 10 {
		blob := fmt.Sprintf("blob %d", i)
		if code, v := a.do(t, "PUT", "/v1/sites/a/blobs/"+push.HashOf([]byte(blob)), pushA, blob); code != 201 {
			t.Fatalf("blob upload %d: %d %v; uploads are not rate-limited", i+1, code, v)
		}
	}
	*a.clock = a.clock.Add(time.Second)
	if code, v := a.do(t, "POST", "/v1/sites/a/purge", purgeA, purgeURL()); code != 202 {
		t.Errorf("purge a second later: %d %v, want 202", code, v)
	}
	if code, _ := a.do(t, "POST", "/v1/sites/a/purge", purgeA, purgeURL()); code != 429 {
		t.Errorf("the next one at once: %d, want 429", code)
	}
}

// TestRetryAfter: Retry-After is whole seconds, rounded up, at least 1.
func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name string
		rate float64
		want string
	}{
		{name: "one a second", rate: 1, want: "1"},
		{name: "one every 3.3s", rate: 0.3, want: "4"},
		{name: "a hundred a second", rate: 100, want: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &API{now: time.Now}
			a.SetLimits(Limits{WriteRate: tt.rate, WriteBurst: 1})
			tok := state.Token{ID: "t", Scopes: []string{"purge:a"}}
			a.rateLimit(httptest.NewRecorder(), tok)
			w := httptest.NewRecorder()
			if a.rateLimit(w, tok) || w.Code != 429 || w.Header().Get("Retry-After") != tt.want {
				t.Errorf("rate %g, second write: %d, Retry-After %q; want 429, %q", tt.rate, w.Code, w.Header().Get("Retry-After"), tt.want)
			}
		})
	}
}

// TestWriteLimiterForgets: buckets of tokens that stopped writing are
// dropped once they would be full again, and forgetting changes nothing:
// a token back after that has its whole burst.
func TestWriteLimiterForgets(t *testing.T) {
	l := newWriteLimiter(10, 50) // full again 5s after emptied
	t0 := time.Unix(1000, 0)
	for i := range 10_000 {
		l.allow(fmt.Sprint("token", i), t0)
	}
	for range 50 {
		l.allow("busy", t0)
	}
	if ok, _ := l.allow("busy", t0); ok {
		t.Fatal("a write past the burst was allowed")
	}
	if n := l.size(); n != 10_001 {
		t.Fatalf("buckets = %d, want 10001", n)
	}
	later := t0.Add(5 * time.Second)
	if ok, _ := l.allow("new", later); !ok {
		t.Fatal("a new token's first write was refused")
	}
	if n := l.size(); n != 1 {
		t.Errorf("buckets after every other token was idle 5s = %d, want 1", n)
	}
	for i := range 50 {
		if ok, _ := l.allow("busy", later); !ok {
			t.Fatalf("write %d of a token back after 5s refused: its bucket should be full", i+1)
		}
	}
}

// TestPurgeTooLargeAsStored: a purge under the body limit that JSON's
// escaping grows past what one NATS message holds is refused with 413,
// and nothing is written.
func TestPurgeTooLargeAsStored(t *testing.T) {
	a, _ := startLimited(t, Limits{}, 8<<20)
	admin := a.token(t, 0, ScopeAdmin)
	a.do(t, "POST", "/v1/sites", admin, siteA)
	// '&' is written as \u0026: 200 URLs of 1,000 of them are 200 KB
	// sent and 1.2 MB stored.
	urls := make([]string, 200)
	for i := range urls {
		urls[i] = fmt.Sprintf(`"/%d?%s"`, i, strings.Repeat("&", 1000))
	}
	code, v := a.do(t, "POST", "/v1/sites/a/purge", admin, `{"urls":[`+strings.Join(urls, ",")+`]}`)
	if code != 413 || !strings.Contains(errMessage(v), "split it") {
		t.Errorf("purge stored as 1.2 MB: %d %q, want 413 asking to split it", code, errMessage(v))
	}
	if info, err := a.store.PurgeLog(t.Context()); err != nil || info.Last != 0 {
		t.Errorf("purge log after the refusal: last version %d (%v), want 0", info.Last, err)
	}
	items := make([]string, 10_001)
	for i := range items {
		items[i] = fmt.Sprintf(`"/%d"`, i)
	}
	if code, v := a.do(t, "POST", "/v1/sites/a/purge", admin, `{"urls":[`+strings.Join(items, ",")+`]}`); code != 413 {
		t.Errorf("purge of 10,001 URLs: %d %q, want 413", code, errMessage(v))
	}
}

// TestSiteBytes: a release whose blobs add up past the site limit is
// refused with 413 naming the limit, and so is a blob that alone is.
func TestSiteBytes(t *testing.T) {
	a, _ := startLimited(t, Limits{SiteBytes: 100}, 1<<20)
	admin := a.token(t, 0, ScopeAdmin)
	a.do(t, "POST", "/v1/sites", admin, siteA)
	pushA := a.token(t, 0, "push:a")
	small := strings.Repeat("s", 60)
	tests := []struct {
		name, method, path, body string
		want                     int
		mention                  string
	}{
		{name: "blob over the site limit", method: "PUT", path: "/v1/sites/a/blobs/" + push.HashOf([]byte(strings.Repeat("b", 101))),
			body: strings.Repeat("b", 101), want: 413, mention: "max_site_bytes"},
		{name: "blob under it", method: "PUT", path: "/v1/sites/a/blobs/" + push.HashOf([]byte(small)), body: small, want: 201},
		{name: "release over the limit", method: "POST", path: "/v1/sites/a/releases",
			body: commitBody2(push.Blob{Hash: push.HashOf([]byte(small)), Size: 60}, push.Blob{Hash: push.HashOf([]byte("other")), Size: 41}),
			want: 413, mention: "max_site_bytes"},
		// One blob named twice counts once; it was uploaded above.
		{name: "release at the limit", method: "POST", path: "/v1/sites/a/releases",
			body: commitBody2(push.Blob{Hash: push.HashOf([]byte(small)), Size: 60}, push.Blob{Hash: push.HashOf([]byte(small)), Size: 60}), want: 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, v := a.do(t, tt.method, tt.path, pushA, tt.body)
			if code != tt.want || !strings.Contains(errMessage(v), tt.mention) {
				t.Errorf("%s %s = %d %q, want %d mentioning %q", tt.method, tt.path, code, errMessage(v), tt.want, tt.mention)
			}
		})
	}
}

// commitBody2 is a commit of two files naming blobs x and y.
func commitBody2(x, y push.Blob) string {
	m := push.Manifest{Files: map[string]push.File{"/x": {Blob: x, Type: "text/plain"}, "/y": {Blob: y, Type: "text/plain"}}}
	b, _ := json.Marshal(push.Commit{Manifest: &m})
	return string(b)
}

// raw sends a request and returns the response, body closed.
func (a *testAPI) raw(t *testing.T, method, path, token, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, a.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	res.Body.Close()
	return res
}
