package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/internal/httpstats"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/purge"
	"github.com/selfcdn/cdn/push"
)

// Store is the shared state the API reads and writes.
type Store interface {
	Site(ctx context.Context, name string) (state.Site, uint64, error)
	Sites(ctx context.Context) ([]state.Site, error)
	PutSite(ctx context.Context, s state.Site, create bool) (uint64, error)
	DeleteSite(ctx context.Context, name string) error
	Edges(ctx context.Context) ([]state.Edge, error)
	Edge(ctx context.Context, name string) (state.Edge, error)
	DeleteEdge(ctx context.Context, name string) error
	EdgeStatus(ctx context.Context, name string) (state.EdgeStatus, error)
	SetEdgeStatus(ctx context.Context, st state.EdgeStatus) error
	EdgeStatuses(ctx context.Context) ([]state.EdgeStatus, error)
	Token(ctx context.Context, id string) (state.Token, error)
	Tokens(ctx context.Context) ([]state.Token, error)
	PutToken(ctx context.Context, t state.Token) error
	DeleteToken(ctx context.Context, id string) error
	PublishPurge(ctx context.Context, site, idempotencyKey string, data []byte) (uint64, bool, error)
	Purge(ctx context.Context, version uint64) (state.Purge, error)
	ReleaseStore
}

// API serves the control HTTP API.
type API struct {
	store   Store
	log     *slog.Logger
	now     func() time.Time
	maxBody int64
	// maxBlob bounds one pushed blob.
	maxBlob int64
	// lastTouch is when push activity was last recorded (Unix ns).
	lastTouch atomic.Int64
	mux       *http.ServeMux
	routes    []string // "METHOD /path", as openapi.yaml lists them
	// progress is the edges' purge reports, for ?wait.
	progress *Progress
	// Roster is the watched registry and verdicts that waits count edges
	// from; nil (or not live) lists the buckets at each wait.
	Roster *Roster
	// Creds mints and revokes edges' NATS users; nil: this process
	// holds no authority (POST /v1/edges/{edge}/creds answers 501).
	Creds EdgeCreds
	// Requests counts answers by route and status; nil counts nothing.
	Requests *prometheus.CounterVec
	// RateLimited counts writes refused with 429 (NewRateLimitedMetric);
	// nil counts nothing.
	RateLimited *prometheus.CounterVec
	// limits are the abuse limits (SetLimits), writes the per-token write
	// rate they set; nil limits no rate.
	limits Limits
	writes *writeLimiter
	// sitesMu serializes site writes, so a host check and the write it
	// allows are one step within this process.
	sitesMu sync.Mutex
}

// NewRequestsMetric is the counter the API records its answers in.
func NewRequestsMetric() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdn_control_api_requests_total", Help: "API requests answered, by route and status code.",
	}, []string{"route", "code"})
}

// New returns the API over store. maxBody bounds request bodies, maxBlob
// one pushed blob; progress is fed the edges' purge reports by the caller.
func New(store Store, progress *Progress, log *slog.Logger, now func() time.Time, maxBody, maxBlob int64) *API {
	a := &API{store: store, progress: progress, log: log, now: now, maxBody: maxBody, maxBlob: maxBlob, mux: http.NewServeMux()}
	read := []string{ScopeRead}
	pusher := []string{"push:{site}"}
	a.handle("GET /v1/sites", read, a.listSites)
	a.handle("POST /v1/sites", nil, a.createSite)
	a.handle("GET /v1/sites/{site}", read, a.getSite)
	a.handle("PUT /v1/sites/{site}", nil, a.putSite)
	a.handle("DELETE /v1/sites/{site}", nil, a.deleteSite)
	a.handle("GET /v1/edges", read, a.listEdges)
	a.handle("GET /v1/edges/{edge}", read, a.getEdge)
	a.handle("DELETE /v1/edges/{edge}", nil, a.deleteEdge)
	a.handle("POST /v1/edges/{edge}/creds", nil, a.edgeCreds)
	a.handle("GET /v1/health", read, a.health)
	a.handle("POST /v1/edges/{edge}/drain", nil, a.drain(true))
	a.handle("POST /v1/edges/{edge}/undrain", nil, a.drain(false))
	a.handle("POST /v1/sites/{site}/purge", []string{"purge:{site}"}, a.purge)
	a.handle("GET /v1/purges/{version}", []string{ScopeRead, scopeAnyPurge}, a.purgeStatus)
	a.handleWith("POST /v1/sites/{site}/blobs/missing", pusher, maxManifestBody, a.missingBlobs)
	a.handleWith("PUT /v1/sites/{site}/blobs/{hash}", pusher, maxBlob, a.putBlob)
	a.handleWith("POST /v1/sites/{site}/blobs", pusher, push.MaxBatchBytes, a.putBlobs)
	a.handleWith("POST /v1/sites/{site}/releases", pusher, maxManifestBody, a.createRelease)
	a.handle("GET /v1/sites/{site}/releases", read, a.listReleases)
	a.handle("GET /v1/sites/{site}/releases/{n}", read, a.releaseStatus)
	a.handle("POST /v1/sites/{site}/releases/{n}/activate", pusher, a.activate)
	a.handle("GET /v1/tokens", nil, a.listTokens)
	a.handle("POST /v1/tokens", nil, a.createToken)
	a.handle("DELETE /v1/tokens/{id}", nil, a.deleteToken)
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// handle registers an endpoint that needs a token with one of scopes (nil:
// admin only). A GET of one site also admits that site's own scopes.
func (a *API) handle(pattern string, scopes []string, h func(http.ResponseWriter, *http.Request) error) {
	a.handleWith(pattern, scopes, a.maxBody, h)
}

// handleWith is handle with its own bound on the request body.
func (a *API) handleWith(pattern string, scopes []string, maxBody int64, h func(http.ResponseWriter, *http.Request) error) {
	a.routes = append(a.routes, pattern)
	limited := writeLimited(pattern)
	a.mux.HandleFunc(pattern, func(rw http.ResponseWriter, r *http.Request) {
		w := &httpstats.Writer{ResponseWriter: rw}
		if a.Requests != nil {
			defer func() { a.Requests.WithLabelValues(pattern, strconv.Itoa(w.Status)).Inc() }()
		}
		t, err := a.authenticate(r.Context(), r)
		switch {
		case errors.Is(err, errNoToken), errors.Is(err, errBadToken):
			w.Header().Set("WWW-Authenticate", `Bearer realm="cdn"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", err.Error())
			return
		case err != nil:
			a.fail(w, r, err)
			return
		}
		site := r.PathValue("site")
		allowed := make([]string, 0, len(scopes)+2)
		for _, s := range scopes {
			allowed = append(allowed, strings.ReplaceAll(s, "{site}", site))
		}
		if site != "" && r.Method == http.MethodGet {
			allowed = append(allowed, "purge:"+site, "push:"+site)
		}
		if !allows(t, allowed...) {
			writeError(w, http.StatusForbidden, "forbidden", "this token may not "+r.Method+" "+r.URL.Path)
			return
		}
		if limited && a.writes != nil && !a.rateLimit(w, t) {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		r = r.WithContext(context.WithValue(r.Context(), tokenKey{}, t))
		if err := h(w, r); err != nil {
			a.fail(w, r, err)
		}
	})
}

// fail is the one place an error becomes a status.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var tooBig *http.MaxBytesError
	var bad *badRequest
	var field *state.FieldError
	var purgeField *purge.FieldError
	var conflicting *conflict
	var collected *gone
	var taken *hostTaken
	var noSite *unknownSite
	var over *overLimit
	switch {
	case errors.As(err, &taken):
		writeHostTaken(w, taken)
	case errors.As(err, &noSite):
		writeError(w, http.StatusUnprocessableEntity, "unknown_site", err.Error())
	case errors.As(err, &over):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.As(err, &collected):
		writeError(w, http.StatusGone, "gone", err.Error())
	case errors.Is(err, purge.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.As(err, &purgeField):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.As(err, &conflicting):
		writeError(w, http.StatusUnprocessableEntity, "idempotency_mismatch", err.Error())
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", tooBig.Limit))
	case errors.As(err, &bad):
		writeError(w, http.StatusBadRequest, "bad_request", bad.msg)
	case errors.As(err, &field):
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, state.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, state.ErrExists):
		writeError(w, http.StatusConflict, "exists", err.Error())
	default:
		a.log.Error("api request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
		// Nothing was written: the caller may retry, with the same
		// Idempotency-Key for a purge.
		w.Header().Set("Retry-After", "2")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the shared state is not reachable; try again")
	}
}

// tokenKey is the request context key of the caller's token.
type tokenKey struct{}

// tokenFrom returns the token the request was authenticated with.
func tokenFrom(ctx context.Context) (state.Token, bool) {
	t, ok := ctx.Value(tokenKey{}).(state.Token)
	return t, ok
}

type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// decode reads one JSON object into v, refusing unknown fields and
// trailing data, with a message that names what was wrong.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return err
		case errors.As(err, &syntax):
			return &badRequest{fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, err)}
		case errors.As(err, &typ):
			return &badRequest{fmt.Sprintf("field %q: want %s, got %s", typ.Field, typ.Type, typ.Value)}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return &badRequest{"unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")}
		case errors.Is(err, io.EOF):
			return &badRequest{"empty body: a JSON object is required"}
		case errors.Is(err, io.ErrUnexpectedEOF):
			return &badRequest{"malformed JSON: the object ends early"}
		}
		return &badRequest{"bad JSON: " + err.Error()}
	}
	if dec.More() {
		return &badRequest{"trailing data after the JSON object"}
	}
	return nil
}
