package dashboard

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/control/api"
	"github.com/selfcdn/cdn/internal/natstest"
	"github.com/selfcdn/cdn/internal/state"
)

// clock is a test clock that several goroutines read.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testDash is the dashboard in front of a real API over a real JetStream.
type testDash struct {
	srv   *httptest.Server
	store *state.Store
	nc    *nats.Conn
	clock *clock
	dash  *Dashboard
	// admin and reader are tokens.
	admin, reader string
}

func startDash(t *testing.T, cfg Config) *testDash {
	t.Helper()
	ns := natstest.Start(t, "", "")
	nc := natstest.Connect(t, ns.URL)
	store, err := state.Open(t.Context(), nc, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Now()}
	log := slog.New(slog.DiscardHandler)
	a := api.New(store, api.NewProgress(), log, c.now, 1<<20, 1<<20)
	d, err := New(cfg, t.TempDir(), log, c.now, func() (http.Handler, Authenticator) { return a, a }, func() *nats.Conn { return nc })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx, store, nc); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	mux := http.NewServeMux()
	mux.Handle("/dashboard/", d)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	td := &testDash{srv: srv, store: store, nc: nc, clock: c, dash: d}
	for _, tok := range []struct {
		into   *string
		scopes []string
		ttl    time.Duration
	}{{&td.admin, []string{api.ScopeAdmin}, 0}, {&td.reader, []string{api.ScopeRead}, time.Hour}} {
		secret, rec := api.NewToken("t", tok.scopes, tok.ttl, c.now())
		if err := store.PutToken(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
		*tok.into = secret
	}
	if err := store.Heartbeat(t.Context(), state.Edge{Name: "edge-a", Region: "r1", HTTP: "http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	return td
}

// browser is a client with a cookie jar, as a browser page of ours.
type browser struct {
	t    *testing.T
	d    *testDash
	c    *http.Client
	csrf string
}

func (d *testDash) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, d: d, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request as the page would (the CSRF header and the Origin
// of the dashboard's host on actions) and returns status and body.
func (b *browser) do(method, path, body string, hdr ...string) (int, string) {
	b.t.Helper()
	req, _ := http.NewRequest(method, b.d.srv.URL+path, strings.NewReader(body))
	if method != http.MethodGet {
		req.Header.Set("Origin", b.d.srv.URL)
		req.Header.Set("X-CSRF-Token", b.csrf)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(out)
}

func (b *browser) signIn(token string) int {
	b.t.Helper()
	code, _ := b.do("POST", "/dashboard/signin", `{"token":"`+token+`"}`)
	if code == http.StatusOK {
		_, body := b.do("GET", "/dashboard/session", "")
		var s struct{ CSRF string }
		json.Unmarshal([]byte(body), &s)
		b.csrf = s.CSRF
	}
	return code
}

func TestSignIn(t *testing.T) {
	d := startDash(t, Config{SessionTTL: time.Hour})
	expired, rec := api.NewToken("old", []string{api.ScopeAdmin}, time.Minute, d.clock.now().Add(-time.Hour))
	if err := d.store.PutToken(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, token string
		want        int
	}{
		{"admin", d.admin, 200},
		{"read-only", d.reader, 200},
		{"wrong secret", d.admin[:len(d.admin)-2] + "xx", 401},
		{"unknown", "cdn_nope_nope", 401},
		{"not a token", `<script>alert(1)</script>`, 401},
		{"expired", expired, 401},
		{"empty", "", 401},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := d.browser(t)
			if got := b.signIn(tt.token); got != tt.want {
				t.Fatalf("sign in: %d, want %d", got, tt.want)
			}
			code, _ := b.do("GET", "/dashboard/session", "")
			if want := map[bool]int{true: 200, false: 401}[tt.want == 200]; code != want {
				t.Errorf("session after sign-in: %d, want %d", code, want)
			}
		})
	}
}

func TestSessionCookie(t *testing.T) {
	d := startDash(t, Config{SessionTTL: time.Hour})
	b := d.browser(t)
	req, _ := http.NewRequest("POST", d.srv.URL+"/dashboard/signin", strings.NewReader(`{"token":"`+d.admin+`"}`))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	cookies := res.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("cookies: %v", cookies)
	}
	c := cookies[0]
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/dashboard/" || c.MaxAge <= 0 || c.MaxAge > 3600 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path /dashboard/, expiring within the hour", c)
	}
	if strings.Contains(c.Value, d.admin) || strings.Contains(c.Value, strings.Split(d.admin, "_")[2]) {
		t.Error("the cookie carries the token in clear")
	}
	if b.signIn(d.admin) != 200 {
		t.Fatal("sign in")
	}
	// The session ends with its time.
	d.clock.add(59 * time.Minute)
	if code, _ := b.do("GET", "/dashboard/session", ""); code != 200 {
		t.Fatalf("session within its hour: %d", code)
	}
	d.clock.add(2 * time.Minute)
	code, body := b.do("GET", "/dashboard/session", "")
	if code != 401 || !strings.Contains(body, "session_expired") {
		t.Errorf("expired session: %d %s, want 401 session_expired", code, body)
	}
}

func TestRevokedTokenEndsSession(t *testing.T) {
	d := startDash(t, Config{})
	b := d.browser(t)
	if b.signIn(d.reader) != 200 {
		t.Fatal("sign in")
	}
	id := strings.Split(d.reader, "_")[1]
	if err := d.store.DeleteToken(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if code, body := b.do("GET", "/dashboard/api/v1/edges", ""); code != 401 || !strings.Contains(body, "token_revoked") {
		t.Errorf("after revoking the token: %d %s, want 401 token_revoked", code, body)
	}
}

func TestForgedCookies(t *testing.T) {
	d := startDash(t, Config{})
	b := d.browser(t)
	b.signIn(d.admin)
	other, err := newSealer(make([]byte, 32)) // another control's key
	if err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]string{
		"garbage":     "not-a-cookie",
		"empty":       "",
		"another key": other.seal(session{Token: d.admin, CSRF: "x", Expires: time.Now().Add(time.Hour)}),
		"truncated":   "AAAA",
		"bit flipped": flip(d.cookie(t, b)),
		"huge":        strings.Repeat("A", 8000),
		"unsealed":    base64.RawURLEncoding.EncodeToString([]byte(`{"t":"` + d.admin + `","c":"x","e":"2999-01-01T00:00:00Z"}`)),
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", d.srv.URL+"/dashboard/session", nil)
			req.AddCookie(&http.Cookie{Name: cookieName, Value: value})
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 401 {
				t.Errorf("%s cookie: %d, want 401", name, res.StatusCode)
			}
		})
	}
}

func (d *testDash) cookie(t *testing.T, b *browser) string {
	for _, c := range b.c.Jar.Cookies(mustURL(t, d.srv.URL+"/dashboard/")) {
		if c.Name == cookieName {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func flip(s string) string {
	b := []byte(s)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestCSRF(t *testing.T) {
	d := startDash(t, Config{})
	b := d.browser(t)
	b.signIn(d.admin)
	actions := []struct{ method, path, body string }{
		{"POST", "/dashboard/api/v1/edges/edge-a/drain", ""},
		{"POST", "/dashboard/api/v1/tokens", `{"name":"x","scopes":["admin"]}`},
		{"DELETE", "/dashboard/api/v1/tokens/" + strings.Split(d.reader, "_")[1], ""},
		{"PUT", "/dashboard/api/v1/sites/s", `{"name":"s","hosts":["s.test"],"origin":"http://127.0.0.1:1"}`},
		{"POST", "/dashboard/count", `{"site":"s","purge":{"all":true}}`},
		{"POST", "/dashboard/signout", ""},
	}
	for _, a := range actions {
		for _, forged := range []struct {
			name string
			hdr  []string
		}{
			{"no CSRF header", []string{"X-CSRF-Token", ""}},
			{"wrong CSRF header", []string{"X-CSRF-Token", "WRONG"}},
			{"another site's Origin", []string{"Origin", "http://evil.test"}},
			{"a cross-site fetch", []string{"Origin", "", "Sec-Fetch-Site", "cross-site"}},
		} {
			if code, _ := b.do(a.method, a.path, a.body, forged.hdr...); code != http.StatusForbidden {
				t.Errorf("%s %s with %s: %d, want 403", a.method, a.path, forged.name, code)
			}
		}
	}
	if st, err := d.store.EdgeStatus(t.Context(), "edge-a"); err != nil || st.Draining {
		t.Errorf("edge-a drained by a forged request (%v)", err)
	}
	// The page's own request goes through.
	if code, body := b.do("POST", "/dashboard/api/v1/edges/edge-a/drain", ""); code != 200 {
		t.Errorf("drain with the CSRF token: %d %s", code, body)
	}
	// Signing in from another site's page is refused too (login CSRF).
	if code, _ := d.browser(t).do("POST", "/dashboard/signin", `{"token":"`+d.admin+`"}`, "Origin", "http://evil.test"); code != 403 {
		t.Errorf("sign-in from another site: %d, want 403", code)
	}
}

func TestReadOnlyCannotAct(t *testing.T) {
	d := startDash(t, Config{})
	b := d.browser(t)
	b.signIn(d.reader)
	if code, _ := b.do("GET", "/dashboard/api/v1/edges", ""); code != 200 {
		t.Errorf("read-only reading edges: %d", code)
	}
	for _, a := range []struct{ method, path, body string }{
		{"POST", "/dashboard/api/v1/edges/edge-a/drain", ""},
		{"POST", "/dashboard/api/v1/tokens", `{"name":"x","scopes":["admin"]}`},
		{"PUT", "/dashboard/api/v1/sites/s", `{"name":"s","hosts":["s.test"],"origin":"http://127.0.0.1:1"}`},
		{"POST", "/dashboard/api/v1/sites/s/purge", `{"all":true}`},
		{"POST", "/dashboard/count", `{"site":"s","purge":{"all":true}}`},
	} {
		if code, _ := b.do(a.method, a.path, a.body); code != http.StatusForbidden {
			t.Errorf("read-only %s %s: %d, want 403", a.method, a.path, code)
		}
	}
	if code, _ := b.do("POST", "/dashboard/links", ""); code != 401 {
		t.Errorf("a session minting a link without a bearer token: %d, want 401", code)
	}
}

func TestOneTimeLink(t *testing.T) {
	d := startDash(t, Config{LinkTTL: time.Minute})
	mint := func(token string) (int, string) {
		req, _ := http.NewRequest("POST", d.srv.URL+"/dashboard/links", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct{ Path string }
		json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body.Path
	}
	if code, _ := mint(d.reader); code != 403 {
		t.Errorf("a read token mints a link: %d, want 403", code)
	}
	code, path := mint(d.admin)
	if code != 201 || !strings.HasPrefix(path, "/dashboard/signin?code=") {
		t.Fatalf("mint: %d %q", code, path)
	}
	b := d.browser(t)
	if code, _ := b.do("GET", path, ""); code != http.StatusSeeOther {
		t.Fatalf("follow the link: %d", code)
	}
	if code, _ := b.do("GET", "/dashboard/session", ""); code != 200 {
		t.Errorf("signed in by the link: %d", code)
	}
	b2 := d.browser(t)
	b2.do("GET", path, "")
	if code, _ := b2.do("GET", "/dashboard/session", ""); code != 401 {
		t.Errorf("the link used twice: %d, want 401", code)
	}
	_, late := mint(d.admin)
	d.clock.add(2 * time.Minute)
	b3 := d.browser(t)
	b3.do("GET", late, "")
	if code, _ := b3.do("GET", "/dashboard/session", ""); code != 401 {
		t.Errorf("an expired link: %d, want 401", code)
	}
}

func TestPagesAndHeaders(t *testing.T) {
	d := startDash(t, Config{})
	for _, path := range []string{"/dashboard/", "/dashboard/assets/app.js", "/dashboard/assets/style.css"} {
		res, err := http.Get(d.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		csp := res.Header.Get("Content-Security-Policy")
		if res.StatusCode != 200 || len(body) == 0 {
			t.Errorf("%s: %d, %d bytes", path, res.StatusCode, len(body))
		}
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
			t.Errorf("%s refers to another host", path)
		}
	}
	res, err := http.Get(d.srv.URL + "/dashboard/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(body), "<script>") || strings.Contains(string(body), " on") && strings.Contains(string(body), "onclick=") {
		t.Error("the page has inline script")
	}
	if code, _ := d.browser(t).do("GET", "/dashboard/events", ""); code != 401 {
		t.Errorf("events signed out: %d, want 401", code)
	}
}

func TestEventsStream(t *testing.T) {
	d := startDash(t, Config{})
	b := d.browser(t)
	b.signIn(d.reader)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", d.srv.URL+"/dashboard/events", nil)
	res, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	// An edge's figures arrive and show in the stream within a second or two.
	stats := state.EdgeStats{Edge: "edge-a", Seconds: 1, Sites: map[string]state.SiteFigure{"s": {Requests: 40, Hits: 30, Misses: 10, Bytes: 4000, HitBytes: 3000}}}
	raw, _ := json.Marshal(stats)
	buf := make([]byte, 1<<16)
	var data strings.Builder
	for ctx.Err() == nil {
		d.nc.Publish(state.StatsSubject("edge-a"), raw)
		n, err := res.Body.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		data.WriteString(string(buf[:n]))
		if i := strings.LastIndex(data.String(), "data: "); i >= 0 && strings.Contains(data.String()[i:], `"rps":40`) && strings.Contains(data.String()[i:], `"hit_ratio":0.75`) {
			break
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("no snapshot with edge-a's figures:\n%s", data.String())
	}
	samples := d.dash.hub.series.last("site:s", d.clock.now())
	var total uint64
	for _, s := range samples {
		total += s.Requests
	}
	if total < 40 {
		t.Errorf("site s's series holds %d requests, want at least 40", total)
	}
}

// TestCloseEndsStreams: an HTTP shutdown is not held by open pages.
func TestCloseEndsStreams(t *testing.T) {
	d := startDash(t, Config{})
	b := d.browser(t)
	b.signIn(d.reader)
	res, err := b.c.Get(d.srv.URL + "/dashboard/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, res.Body); done <- err }()
	d.dash.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream still open 5s after Close")
	}
	if code, _ := b.do("GET", "/dashboard/events", ""); code != 200 {
		t.Errorf("events after Close: %d, want 200 (one snapshot, then the end)", code)
	}
}

// TestStreamEndsWithSession: an open stream ends when its session expires
// or its token is revoked, and cannot be opened again.
func TestStreamEndsWithSession(t *testing.T) {
	for _, end := range []string{"expired", "revoked"} {
		t.Run(end, func(t *testing.T) {
			d := startDash(t, Config{SessionTTL: time.Minute})
			b := d.browser(t)
			b.signIn(d.reader)
			res, err := b.c.Get(d.srv.URL + "/dashboard/events")
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			done := make(chan struct{})
			go func() { io.Copy(io.Discard, res.Body); close(done) }()
			if end == "expired" {
				d.clock.add(2 * time.Minute)
			} else if err := d.store.DeleteToken(t.Context(), strings.Split(d.reader, "_")[1]); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(recheckEvery + 5*time.Second):
				t.Fatalf("the stream still open %s after the session %s", recheckEvery+5*time.Second, end)
			}
			if code, _ := b.do("GET", "/dashboard/events", ""); code != 401 {
				t.Errorf("a new stream: %d, want 401", code)
			}
		})
	}
}
