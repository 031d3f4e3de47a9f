package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/control/api"
	"github.com/selfcdn/cdn/control/dashboard"
	"github.com/selfcdn/cdn/internal/certstore"
	"github.com/selfcdn/cdn/internal/deps"
	cdnmetrics "github.com/selfcdn/cdn/internal/metrics"
	"github.com/selfcdn/cdn/internal/natsauth"
	"github.com/selfcdn/cdn/internal/natsembed"
	"github.com/selfcdn/cdn/internal/natslink"
	"github.com/selfcdn/cdn/internal/state"
)

// Deps are the logger, metrics registry and clock the caller gives
// control; nil fields get defaults.
type Deps = deps.Deps

// Server is a running control process.
type Server struct {
	cfg   Config
	log   *slog.Logger
	reg   *prometheus.Registry
	now   func() time.Time
	ready atomic.Bool
	// NATSURL is where edges connect: the embedded server's client URL,
	// or the external cluster's URLs. Set once Run has started NATS.
	natsURL atomic.Pointer[string]
}

// New checks cfg and returns a control server; Run starts it.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d = d.WithDefaults()
	if len(cfg.NATS.URLs) > 0 && cfg.NATS.Creds != "" {
		if err := natsauth.CheckCreds(cfg.NATS.Creds, natsauth.RoleControl, ""); err != nil {
			return nil, err
		}
	}
	s := &Server{cfg: cfg, log: d.Logger, reg: d.Registry, now: d.Now}
	return s, nil
}

// NATSURL is the NATS URL edges should use, empty until Run started NATS.
func (s *Server) NATSURL() string {
	if p := s.natsURL.Load(); p != nil {
		return *p
	}
	return ""
}

// Run starts NATS (embedded unless external URLs are configured), opens
// the shared state, and serves the API until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("control listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer ln.Close()
	urls := s.cfg.NATS.URLs
	natsCfg := natslink.Config{Creds: s.cfg.NATS.Creds, CA: s.cfg.NATS.CA, Inbox: natsauth.InboxPrefix(natsauth.RoleControl, "")}
	sysCreds := s.cfg.NATS.SystemCreds
	var auth *natsauth.Authority
	if len(urls) == 0 || hasAuthority(s.cfg.DataDir) {
		var err error
		if auth, err = OpenAuthority(s.cfg.DataDir); err != nil {
			return fmt.Errorf("nats authority: %w", err)
		}
	}
	var ns *server.Server
	if len(urls) == 0 {
		var err error
		dir := filepath.Join(s.cfg.DataDir, "nats")
		ns, err = natsembed.Start(natsembed.Config{Listen: s.cfg.NATS.Listen, Dir: dir, Name: "control", Auth: auth, TLS: s.cfg.NATS.TLS})
		if err != nil {
			return fmt.Errorf("embedded nats: %w", err)
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		urls = []string{ns.ClientURL()}
		authDir := filepath.Join(s.cfg.DataDir, AuthDir)
		natsCfg.Creds, natsCfg.CA = filepath.Join(authDir, ControlCredsFile), s.cfg.NATS.TLS.CA
		sysCreds = filepath.Join(authDir, SystemCredsFile)
		s.log.Info("embedded NATS with JetStream started", "url", ns.ClientURL(), "dir", dir, "tls", s.cfg.NATS.TLS.Enabled(),
			"operator_creds", filepath.Join(authDir, OperatorCredsFile))
	}
	joined := strings.Join(urls, ",")
	s.natsURL.Store(&joined)

	// HTTP first: while NATS is not reachable yet, /readyz and the API
	// answer 503 instead of leaving clients hanging.
	var apiReady atomic.Pointer[api.API]
	var nc atomic.Pointer[nats.Conn]
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		a := apiReady.Load()
		if a == nil {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"unavailable","message":"control is waiting for NATS"}}` + "\n"))
			return
		}
		a.ServeHTTP(w, r)
	})
	dash, err := dashboard.New(s.cfg.Dashboard, s.cfg.DataDir, s.log.With("component", "dashboard"), s.now,
		func() (http.Handler, dashboard.Authenticator) {
			if a := apiReady.Load(); a != nil {
				return a, a
			}
			return nil, nil
		}, nc.Load)
	if err != nil {
		return err
	}
	mux.Handle("/dashboard/", dash)
	mux.Handle("/dashboard", dash)
	mux.Handle("GET /metrics", cdnmetrics.Handler(s.reg))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if c := nc.Load(); !s.ready.Load() || c == nil || c.Status() != nats.CONNECTED {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	srv.RegisterOnShutdown(dash.Close) // its live streams would hold the shutdown
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	defer func() {
		shut, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer done()
		srv.Shutdown(shut)
	}()

	conn, store, err := s.connect(ctx, joined, natsCfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for NATS
		}
		return err
	}
	defer conn.Close()
	nc.Store(conn)
	if err := s.bootstrap(ctx, store); err != nil {
		return err
	}
	if err := certstore.CreateBucket(ctx, conn, s.cfg.NATS.Replicas); err != nil {
		return err // creates the certificates bucket with the cluster's replicas
	}
	progress := api.NewProgress()
	a := api.New(store, progress, s.log, s.now, s.cfg.MaxBodyBytes, s.cfg.Releases.MaxBlobBytes)
	a.Roster = api.NewRoster()
	if auth != nil {
		issuer := &edgeCreds{auth: auth, url: joined, opts: systemLink(sysCreds, natsCfg.CA), log: s.log}
		defer issuer.close()
		a.Creds = issuer
	}
	a.Requests = api.NewRequestsMetric()
	s.reg.MustRegister(a.Requests)
	a.RateLimited = api.NewRateLimitedMetric()
	s.reg.MustRegister(a.RateLimited)
	a.SetLimits(api.Limits{WriteRate: s.cfg.Limits.WriteRate, WriteBurst: s.cfg.Limits.WriteBurst, SiteBytes: s.cfg.Push.MaxSiteBytes})
	apiReady.Store(a)
	checks := newChecker(store, s.cfg.Health, s.log, s.now, s.reg)
	checks.watched = a.Roster.Snapshot
	checks.applied = progress.Applied
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { checks.run(ctx) })
	wg.Go(func() { checks.watchNames(ctx) })
	wg.Go(func() { s.watchPurgeReports(ctx, store, progress) })
	wg.Go(func() {
		s.watchAgain(ctx, "watching the edge registry", a.Roster.LostEdges, func() error { return store.WatchEdges(ctx, a.Roster.SetEdges) })
	})
	wg.Go(func() {
		s.watchAgain(ctx, "watching edge verdicts", a.Roster.LostStatuses, func() error { return store.WatchEdgeStatuses(ctx, a.Roster.SetStatuses) })
	})
	wg.Go(func() { dash.Run(ctx, dashboardStore{store, progress}, conn) })
	wg.Go(func() { s.collectReleases(ctx, store) })
	wg.Go(func() {
		// Without it pushes still work, checking each blob with a request.
		if err := store.IndexBlobs(ctx); err != nil {
			s.log.Warn("no in-memory blob index; push checks ask JetStream per blob", slog.Any("err", err))
		}
	})
	s.ready.Store(true)
	s.log.Info("control ready", "api", "http://"+ln.Addr().String(), "nats", joined)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.ready.Store(false)
	cancel()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	s.log.Info("control stopped")
	return err
}

// dashboardStore is the store as the dashboard follows it: the purge
// reports from control's one watch of them (progress).
type dashboardStore struct {
	*state.Store
	progress *api.Progress
}

func (d dashboardStore) WatchPurgesApplied(ctx context.Context, f func(state.PurgeApplied)) error {
	return d.progress.Follow(ctx, f)
}

// watchPurgeReports feeds the edges' purge reports to progress until ctx
// ends, watching again after a failure.
func (s *Server) watchPurgeReports(ctx context.Context, store *state.Store, progress *api.Progress) {
	s.watchAgain(ctx, "watching purge reports", func() {}, func() error { return store.WatchPurgesApplied(ctx, progress.Set) })
}

// watchAgain runs watch until ctx ends, calling lost and running it
// again a second after each failure.
func (s *Server) watchAgain(ctx context.Context, what string, lost func(), watch func() error) {
	for {
		err := watch()
		lost()
		if ctx.Err() != nil {
			return
		}
		s.log.Warn(what+" failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// connect reaches NATS and opens the buckets, retrying with backoff while
// NATS is not there yet (control may start before its cluster).
func (s *Server) connect(ctx context.Context, url string, link natslink.Config) (*nats.Conn, *state.Store, error) {
	opts := append([]nats.Option{nats.Name("cdn-control"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}, link.Options()...)
	wait := 250 * time.Millisecond
	for {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			octx, cancel := context.WithTimeout(ctx, 10*time.Second)
			store, serr := state.Open(octx, nc, state.Options{
				Replicas: s.cfg.NATS.Replicas, PurgeMaxAge: s.cfg.Purges.Retention, PurgeMaxMsgs: s.cfg.Purges.MaxPurges,
				PurgeDupeWindow: s.cfg.Purges.IdempotencyWindow,
			})
			if serr == nil {
				serr = store.LimitPurgeBytes(octx, s.cfg.Purges.MaxBytes)
			}
			if serr == nil {
				serr = store.EnsurePeerSecret(octx)
			}
			cancel()
			if serr == nil {
				return nc, store, nil
			}
			nc.Close()
			err = serr
		}
		s.log.Warn("waiting for NATS", "url", url, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("nats at %s: %w (gave up: %v)", url, err, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// TokenFile is where the bootstrap admin token is written, under DataDir.
const TokenFile = "admin-token"

// bootstrap creates the first admin token when there is none, prints it
// once, and saves it (mode 0600) for local tools such as `cdn up`.
func (s *Server) bootstrap(ctx context.Context, store *state.Store) error {
	tokens, err := store.Tokens(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap token: %w", err)
	}
	if len(tokens) > 0 {
		return nil
	}
	secret, t := api.NewToken("bootstrap", []string{api.ScopeAdmin}, 0, s.now())
	if err := store.PutToken(ctx, t); err != nil {
		return fmt.Errorf("bootstrap token: %w", err)
	}
	path := filepath.Join(s.cfg.DataDir, TokenFile)
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("bootstrap token: %w", err)
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("bootstrap token: %w", err)
	}
	s.log.Warn("created the bootstrap admin token; it is shown this once", "token", secret, "saved_to", path)
	return nil
}
