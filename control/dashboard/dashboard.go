package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/control/api"
	"github.com/selfcdn/cdn/internal/state"
)

//go:embed assets
var assets embed.FS

// Config is the dashboard's part of control's configuration.
type Config struct {
	// SessionTTL is how long a sign-in lasts. Default 12h.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// LinkTTL is how long a one-time sign-in link (cdn up's) stays
	// usable. Default 24h.
	LinkTTL time.Duration `yaml:"link_ttl"`
}

// Defaults fills the zero fields.
func (c Config) Defaults() Config {
	if c.SessionTTL <= 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.LinkTTL <= 0 {
		c.LinkTTL = 24 * time.Hour
	}
	return c
}

// Authenticator checks API tokens (control/api's API).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (state.Token, error)
}

// Dashboard serves the operator pages under /dashboard/. It is made at
// once, before NATS is reached (its pages then say control is waiting),
// and Run makes it live.
type Dashboard struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	keys   *sealer
	hub    *hub
	static http.Handler

	// api is the control API the pages act through, with the signed-in
	// token: every scope check stays the API's.
	api  func() (http.Handler, Authenticator)
	conn func() *nats.Conn

	// counts holds a token per purge count running (maxCounts).
	counts chan struct{}

	mu    sync.Mutex // guards links
	links map[string]link
}

// link is a one-time sign-in link's token and expiry.
type link struct {
	token   string
	expires time.Time
}

// New returns the dashboard. dataDir keeps its session key; api returns
// the API once control has it (nil before), and conn the NATS connection.
func New(cfg Config, dataDir string, log *slog.Logger, now func() time.Time, apiNow func() (http.Handler, Authenticator), conn func() *nats.Conn) (*Dashboard, error) {
	keys, err := loadKey(dataDir)
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		return nil, err
	}
	return &Dashboard{cfg: cfg.Defaults(), log: log, now: now, keys: keys, hub: newHub(log, now), static: http.FileServerFS(sub),
		api: apiNow, conn: conn, links: map[string]link{}, counts: make(chan struct{}, maxCounts)}, nil
}

// Run follows the network for the live view until ctx ends.
func (d *Dashboard) Run(ctx context.Context, store Store, nc *nats.Conn) { d.hub.run(ctx, store, nc) }

// Close ends the pages' live streams; control calls it as its HTTP
// server shuts down, which would otherwise wait for them.
func (d *Dashboard) Close() { d.hub.close() }

// contentSecurity forbids inline script and style and anything from
// another host: an injected tag can neither run nor load.
const contentSecurity = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP routes /dashboard/.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurity)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	path := strings.TrimPrefix(r.URL.Path, "/dashboard")
	switch {
	case path == "":
		http.Redirect(w, r, "/dashboard/", http.StatusFound)
	case path == "/" || path == "/index.html" || strings.HasPrefix(path, "/assets/"):
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			d.fail(w, http.StatusMethodNotAllowed, "method", "GET only")
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = strings.TrimPrefix(path, "/assets")
		if path == "/index.html" {
			r2.URL.Path = "/"
		}
		d.static.ServeHTTP(w, r2)
	case path == "/signin" && r.Method == http.MethodPost:
		d.signIn(w, r)
	case path == "/signin" && r.Method == http.MethodGet:
		d.signInLink(w, r)
	case path == "/links" && r.Method == http.MethodPost:
		d.mintLink(w, r)
	default:
		d.signedIn(w, r, path)
	}
}

// signedIn serves what needs a session.
func (d *Dashboard) signedIn(w http.ResponseWriter, r *http.Request, path string) {
	s, t, ok := d.session(w, r)
	if !ok {
		return
	}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	if write && !checkCSRF(r, s) {
		d.fail(w, http.StatusForbidden, "csrf", "this action lacks the page's CSRF token or comes from another site")
		return
	}
	switch {
	case path == "/session" && !write:
		writeJSON(w, http.StatusOK, map[string]any{"csrf": s.CSRF, "name": t.Name, "id": t.ID, "scopes": t.Scopes,
			"admin": api.Can(t), "expires": s.Expires})
	case path == "/signout" && r.Method == http.MethodPost:
		http.SetCookie(w, cookie("", time.Time{}, r.TLS != nil))
		w.WriteHeader(http.StatusNoContent)
	case path == "/events" && !write:
		d.events(w, r, s)
	case path == "/series" && !write:
		// Up to the last whole second: the current one is still filling.
		writeJSON(w, http.StatusOK, map[string]any{"key": r.URL.Query().Get("key"), "keys": d.hub.series.keys(),
			"samples": d.hub.series.last(r.URL.Query().Get("key"), d.now().Add(-time.Second))})
	case path == "/count" && r.Method == http.MethodPost:
		d.count(w, r, t)
	case path == "/explain" && !write:
		d.explain(w, r)
	case strings.HasPrefix(path, "/api/v1/"):
		d.proxy(w, r, s, strings.TrimPrefix(path, "/api"))
	default:
		d.fail(w, http.StatusNotFound, "not_found", "no such page: "+r.Method+" "+r.URL.Path)
	}
}

// session opens the request's session and checks its token again; it
// answers 401 itself when there is none.
func (d *Dashboard) session(w http.ResponseWriter, r *http.Request) (session, state.Token, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		d.fail(w, http.StatusUnauthorized, "signed_out", errNoSession.Error())
		return session{}, state.Token{}, false
	}
	s, err := d.keys.open(c.Value, d.now())
	if err != nil {
		// The cookie stays: every later request says why, until the
		// browser drops it at its expiry or the operator signs in again.
		code := "signed_out"
		if errors.Is(err, errSessionExpired) {
			code = "session_expired"
		}
		d.fail(w, http.StatusUnauthorized, code, err.Error())
		return session{}, state.Token{}, false
	}
	_, auth := d.api()
	if auth == nil {
		w.Header().Set("Retry-After", "1")
		d.fail(w, http.StatusServiceUnavailable, "unavailable", "control is waiting for NATS")
		return session{}, state.Token{}, false
	}
	t, err := auth.Authenticate(r.Context(), s.Token)
	switch {
	case errors.Is(err, api.ErrBadToken):
		d.fail(w, http.StatusUnauthorized, "token_revoked", "the token this session signed in with is revoked or expired; sign in again")
		return session{}, state.Token{}, false
	case err != nil:
		w.Header().Set("Retry-After", "1")
		d.fail(w, http.StatusServiceUnavailable, "unavailable", "the shared state is not reachable; try again")
		return session{}, state.Token{}, false
	}
	return s, t, true
}

// signIn takes a token from the sign-in form (JSON {"token": ...}).
func (d *Dashboard) signIn(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		d.fail(w, http.StatusForbidden, "csrf", "sign-in from another site")
		return
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil {
		d.fail(w, http.StatusBadRequest, "bad_request", "want {\"token\": ...}")
		return
	}
	d.start(w, r, strings.TrimSpace(body.Token), false)
}

// start checks token and, if it is valid, sets a session for it; with
// redirect it answers by sending the browser to the pages.
func (d *Dashboard) start(w http.ResponseWriter, r *http.Request, token string, redirect bool) {
	_, auth := d.api()
	if auth == nil {
		w.Header().Set("Retry-After", "1")
		d.fail(w, http.StatusServiceUnavailable, "unavailable", "control is waiting for NATS")
		return
	}
	t, err := auth.Authenticate(r.Context(), token)
	switch {
	case errors.Is(err, api.ErrBadToken):
		d.fail(w, http.StatusUnauthorized, "bad_token", "that token is not valid (wrong, revoked or expired)")
		return
	case err != nil:
		d.fail(w, http.StatusServiceUnavailable, "unavailable", "the shared state is not reachable; try again")
		return
	}
	expires := d.now().Add(d.cfg.SessionTTL)
	if !t.Expires.IsZero() && t.Expires.Before(expires) {
		expires = t.Expires
	}
	s := session{Token: token, CSRF: randomText(), Expires: expires}
	http.SetCookie(w, cookie(d.keys.seal(s), expires, r.TLS != nil))
	d.log.Info("dashboard sign-in", slog.String("token", t.ID), slog.String("name", t.Name))
	if redirect {
		http.Redirect(w, r, "/dashboard/", http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": t.Name, "scopes": t.Scopes})
}

// signInLink signs in with a one-time link's code (GET ?code=).
func (d *Dashboard) signInLink(w http.ResponseWriter, r *http.Request) {
	code := r.URL.Query().Get("code")
	d.mu.Lock()
	l, ok := d.links[code]
	delete(d.links, code)
	d.mu.Unlock()
	if !ok || code == "" || !d.now().Before(l.expires) {
		http.Redirect(w, r, "/dashboard/#signin-link-used", http.StatusSeeOther)
		return
	}
	d.start(w, r, l.token, true)
}

// mintLink makes a one-time sign-in link for the bearer token's holder
// (an admin), as `cdn up` does for its operator.
func (d *Dashboard) mintLink(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	_, auth := d.api()
	if auth == nil {
		d.fail(w, http.StatusServiceUnavailable, "unavailable", "control is waiting for NATS")
		return
	}
	t, err := auth.Authenticate(r.Context(), token)
	if !ok || err != nil {
		d.fail(w, http.StatusUnauthorized, "unauthorized", "an admin bearer token is required")
		return
	}
	if !api.Can(t) {
		d.fail(w, http.StatusForbidden, "forbidden", "only an admin token mints sign-in links")
		return
	}
	code := randomText()
	d.mu.Lock()
	now := d.now()
	for c, l := range d.links {
		if !now.Before(l.expires) {
			delete(d.links, c)
		}
	}
	if len(d.links) >= 100 {
		d.mu.Unlock()
		d.fail(w, http.StatusTooManyRequests, "too_many", "100 unused sign-in links are pending")
		return
	}
	d.links[code] = link{token: token, expires: now.Add(d.cfg.LinkTTL)}
	d.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"path": "/dashboard/signin?code=" + code, "expires": now.Add(d.cfg.LinkTTL)})
}

// proxy hands an API call to the API with the session's token.
func (d *Dashboard) proxy(w http.ResponseWriter, r *http.Request, s session, path string) {
	h, _ := d.api()
	if h == nil {
		d.fail(w, http.StatusServiceUnavailable, "unavailable", "control is waiting for NATS")
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = path, ""
	r2.RequestURI = ""
	r2.Header.Set("Authorization", "Bearer "+s.Token)
	r2.Header.Del("Cookie")
	h.ServeHTTP(w, r2)
}

// recheckEvery is how often an open stream checks its session again: a
// session that expires or a token revoked ends the stream within it.
const recheckEvery = 5 * time.Second

// events streams a snapshot of the network every second (server-sent
// events) until the page goes or its session ends.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request, s session) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		d.fail(w, http.StatusInternalServerError, "no_stream", "streaming unsupported")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	// retry: the browser reconnects after a second when control goes.
	w.Write([]byte("retry: 1000\n\n"))
	flusher.Flush()
	c, stop := d.hub.subscribe()
	defer stop()
	recheck := time.NewTicker(recheckEvery)
	defer recheck.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-recheck.C:
			if !d.stillValid(r.Context(), s) {
				return // the browser reconnects, and is told to sign in
			}
		case snap, ok := <-c:
			if !ok {
				return // control is stopping
			}
			w.Write([]byte("data: "))
			w.Write(snap)
			w.Write([]byte("\n\n"))
			flusher.Flush()
		}
	}
}

// stillValid reports whether a session may go on: not expired, its token
// not revoked (a state that cannot be read gives it the benefit of the
// doubt; the next check asks again).
func (d *Dashboard) stillValid(ctx context.Context, s session) bool {
	if !d.now().Before(s.Expires) {
		return false
	}
	_, auth := d.api()
	if auth == nil {
		return true
	}
	_, err := auth.Authenticate(ctx, s.Token)
	return !errors.Is(err, api.ErrBadToken)
}

// countTimeout bounds how long a blast radius waits for edges.
const countTimeout = 6 * time.Second

// maxCounts bounds the counts running at once: each has every edge read
// the metadata of every object on its disk.
const maxCounts = 2

// count asks every edge how many cached objects a purge would match. Only
// a token that may purge the site may ask.
func (d *Dashboard) count(w http.ResponseWriter, r *http.Request, t state.Token) {
	var req state.CountRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil || req.Site == "" {
		d.fail(w, http.StatusBadRequest, "bad_request", "want {\"site\": ..., \"purge\": {...}}")
		return
	}
	if !api.Can(t, "purge:"+req.Site) {
		d.fail(w, http.StatusForbidden, "forbidden", "this token may not purge "+req.Site)
		return
	}
	select {
	case d.counts <- struct{}{}:
		defer func() { <-d.counts }()
	default:
		w.Header().Set("Retry-After", "1")
		d.fail(w, http.StatusTooManyRequests, "busy", "other purge counts are running; try again in a moment")
		return
	}
	nc := d.conn()
	if nc == nil {
		d.fail(w, http.StatusServiceUnavailable, "unavailable", "control is waiting for NATS")
		return
	}
	body, _ := json.Marshal(req)
	d.hub.mu.Lock()
	var names []string
	down := map[string]bool{}
	for name := range d.hub.edges {
		names = append(names, name)
		down[name] = d.hub.statuses[name].Health == state.HealthDown
	}
	d.hub.mu.Unlock()
	answers := make([]state.CountAnswer, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		if down[name] {
			// Not asked: it would only time out. It applies the purge
			// from the log when it comes back.
			answers[i] = state.CountAnswer{Edge: name, Error: "edge is down"}
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), countTimeout)
			defer cancel()
			answers[i] = state.CountAnswer{Edge: name}
			m, err := nc.RequestWithContext(ctx, state.CountSubject(name), body)
			if err != nil {
				answers[i].Error = "no answer: " + err.Error()
				return
			}
			if err := json.Unmarshal(m.Data, &answers[i]); err != nil {
				answers[i].Error = "bad answer"
			}
			answers[i].Edge = name
		})
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, map[string]any{"edges": answers})
}

// explain asks geodns how it answers a client.
func (d *Dashboard) explain(w http.ResponseWriter, r *http.Request) {
	nc := d.conn()
	if nc == nil {
		d.fail(w, http.StatusServiceUnavailable, "unavailable", "control is waiting for NATS")
		return
	}
	body, _ := json.Marshal(state.ExplainRequest{Client: r.URL.Query().Get("client")})
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, state.ExplainSubject, body)
	if err != nil {
		d.fail(w, http.StatusServiceUnavailable, "no_geodns", "no geodns answered: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(m.Data)
}

func (d *Dashboard) fail(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
