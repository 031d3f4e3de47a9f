package edge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go/http3"
	"github.com/selfcdn/cdn/edge/cache"
	"github.com/selfcdn/cdn/edge/certs"
	"github.com/selfcdn/cdn/edge/fill"
	"github.com/selfcdn/cdn/edge/h2"
	"github.com/selfcdn/cdn/edge/purgesync"
	"github.com/selfcdn/cdn/edge/release"
	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/internal/accesslog"
	"github.com/selfcdn/cdn/internal/certstore"
	"github.com/selfcdn/cdn/internal/deps"
	cdnmetrics "github.com/selfcdn/cdn/internal/metrics"
	"github.com/selfcdn/cdn/internal/natsauth"
	"github.com/selfcdn/cdn/origin"
	"github.com/selfcdn/cdn/purge"
	"github.com/valyala/fasthttp"
)

// Deps are the logger (lifecycle events and the access log), metrics
// registry and clock the caller gives the edge; nil fields get defaults.
type Deps = deps.Deps

// Server is a standalone edge: the request path on its listener, metrics
// and health on the admin listener.
type Server struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	handler *Handler
	mem     *cache.Memory
	ready   atomic.Bool
	// purges follows the purge log; nil without a control link.
	purges *purgesync.Follower
	// releases keeps pushed releases; nil without a control link and a
	// cache dir.
	releases *release.Syncer
	// sitesLoaded is set once an edge with a control link has sites (from
	// control or from the copy on disk); it is not ready before.
	sitesLoaded atomic.Bool
	started     time.Time
	// certs gives the HTTPS listeners their certificates; nil without TLS.
	certs *certs.Manager
	// certStore is the network's shared certificate storage, bound by
	// the control link; nil without TLS or without control.
	certStore *certstore.Storage
	// h2metrics counts HTTP/2 connections cut off for floods.
	h2metrics *h2.Metrics
	// addr, adminAddr and httpsAddr are the listeners' actual addresses,
	// for the registration with control.
	addr, adminAddr, httpsAddr string
}

// New builds an edge from cfg. It opens no sockets.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if c := cfg.Control; c != nil && c.Creds != "" {
		// Another edge's creds would register this edge under its name.
		if err := natsauth.CheckCreds(c.Creds, natsauth.RoleEdge, cfg.Name); err != nil {
			return nil, err
		}
	}
	d = d.WithDefaults()
	log, reg, now := d.Logger, d.Registry, d.Now
	mem, err := cache.NewMemory(cache.Config{MemoryBytes: int64(cfg.Cache.Memory), MaxObjectBytes: int64(cfg.Cache.MaxObject)}, reg)
	if err != nil {
		return nil, err
	}
	var disk *cache.Disk
	built := false
	var cm *certs.Manager
	defer func() {
		if !built { // an error below: close what was opened
			if cm != nil {
				cm.Close()
			}
			mem.Close()
			if disk != nil {
				disk.Close()
			}
		}
	}()
	dir := cfg.Cache.Dir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("create cache dir: %w", err)
		}
	}
	if dir != "" && cfg.Cache.Disk > 0 {
		disk, err = cache.OpenDisk(cache.DiskConfig{
			Dir: filepath.Join(dir, "disk"), MaxBytes: int64(cfg.Cache.Disk), MaxObjects: cfg.Cache.DiskObjects,
			MaxObjectBytes: int64(cfg.Cache.MaxDiskObject), Log: log,
		}, reg)
		if err != nil {
			return nil, err
		}
	}
	var shared *certstore.Storage
	if cfg.Control != nil && cfg.TLS.Listen != "" {
		shared = certstore.New(certstore.Config{Owner: cfg.Name, Logger: log})
	}
	if cm, err = newCertManager(cfg, d, shared); err != nil {
		return nil, err
	}
	m := newMetrics(reg)
	maxObj := int64(cfg.Cache.MaxObject)
	h := &Handler{
		name:       cfg.Name,
		via:        "1.1 " + cfg.Name,
		mem:        mem,
		disk:       disk,
		group:      fill.NewGroup(func() *fill.Body { return fill.NewBody(maxObj, dir) }),
		origins:    origin.NewPool(cfg.Origin, reg, log),
		maxBody:    int64(cfg.MaxBodyBytes),
		bodies:     newBodyGate(int64(cfg.BodyBuffer), cfg.BodyTimeout, cfg.MaxStreamingBodies),
		maxURI:     int(min(cfg.MaxURIBytes, cfg.MaxHeaderBytes)),
		maxObject:  maxObj,
		diskInline: min(maxObj, int64(cfg.Cache.Memory)/64),
		sendFile:   cfg.SendFile,
		log:        log,
		metrics:    m,
		now:        now,
		bgCtx:      context.Background(),
	}
	maxRules := 0
	var tierCfg tier.Config
	if cfg.Control != nil {
		maxRules = cmp.Or(cfg.Control.MaxPurgeRules, 100_000)
		tierCfg = cfg.Control.Tier
	}
	// Standalone, the tier has no peers; it still marks and bounds hops
	// (CDN-Loop), so an origin that points back at the edge is caught.
	h.tier = tier.New(tierCfg, cfg.Name, cfg.Region, reg)
	if cfg.AccessLog {
		h.access = accesslog.New(d.AccessLog, accesslog.Config{}, reg)
	}
	start, err := startClock(dir, now())
	if err != nil {
		return nil, err
	}
	h.purges = purge.NewTable(maxRules, now, h.siteKeyRules)
	h.purges.Advance(start)
	if err := h.useSites(cfg.Sites); err != nil {
		return nil, err
	}
	if cm != nil {
		h.certs = cm
		_, h.httpsPort, _ = net.SplitHostPort(cfg.TLS.Listen)
		if err := cm.Update(certSites(cfg.Sites)); err != nil {
			return nil, fmt.Errorf("certificates: %w", err)
		}
	}
	h.fill = fill.New(fill.Config{
		Memory: mem, Disk: disk, Group: h.group, Upstream: h.fetchUpstream, Lookup: h.get, Header: h.clientHeader,
		Prepare:     func(e *cache.Entry, key string) { markEncodable(e, key, maxObj) },
		Hot:         h.tier.Hot,
		MaxVariants: cfg.Cache.MaxVariants, HitForMissTTL: cfg.Cache.HitForMissTTL,
		Fetched: m.fetched, Log: log, Now: now, FirstGen: start,
	})
	h.prepareStatus()
	s := &Server{cfg: cfg, log: log, reg: reg, handler: h, mem: mem, certs: cm, certStore: shared, started: now(), h2metrics: h2.NewMetrics(reg)}
	if cfg.Control != nil {
		s.loadSitesFile()
		s.purges, err = purgesync.Open(h.purges, purgesync.Config{
			Edge: cfg.Name, Dir: dir, HasCache: disk != nil && disk.Len() > 0,
			Logger: log, Registry: reg, Now: now,
		})
		if err != nil {
			return nil, fmt.Errorf("open the purge log: %w", err)
		}
		h.tier.SetPurges(s.purges.Applied)
		if dir == "" {
			log.Warn("no cache.dir: pushed releases are not served")
		} else {
			pinned, err := cache.OpenPinned(filepath.Join(dir, "pinned"), int64(cfg.Control.PinnedMax), reg)
			if err != nil {
				return nil, err
			}
			h.pinned = pinned
			s.releases = release.NewSyncer(release.Config{
				Edge: cfg.Name, Dir: filepath.Join(dir, "releases"), Fetchers: cfg.Control.ReleaseFetchers,
				Apply: h.setRelease, Log: log,
			}, pinned, reg)
			s.releases.Load()
		}
	}
	built = true
	return s, nil
}

// prepareStatus builds the Cache-Status values (RFC 9211) once.
func (h *Handler) prepareStatus() {
	v := func(params string) []string { return []string{h.name + "; " + params} }
	h.statusHit = v("hit")
	h.statusStale = v(`hit; detail="stale-while-revalidate"`)
	h.statusStaleError = v(`hit; fwd=stale; detail="stale-if-error"`)
	h.statusMiss = v("fwd=uri-miss")
	h.statusMissStored = v("fwd=uri-miss; stored")
	h.statusCollapsed = v("fwd=uri-miss; collapsed")
	h.statusRevalidated = v("fwd=stale; fwd-status=304; stored")
	h.statusPass = v(`fwd=uri-miss; detail="not-storable"`)
	h.statusMethod = v("fwd=method")
	h.statusRangePass = v(`fwd=uri-miss; detail="range-from-origin"`)
	h.statusPushed = v(`hit; detail="pushed"`)
}

// Handler returns the request path, for tests and embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens on the configured addresses and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	var l Listeners
	var err error
	fail := func(err error) error { // close what was opened before err
		for _, c := range []io.Closer{l.HTTP, l.Admin} {
			if c != nil {
				c.Close()
			}
		}
		return err
	}
	if l.HTTP, err = net.Listen("tcp", s.cfg.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if s.cfg.AdminListen != "" {
		if l.Admin, err = net.Listen("tcp", s.cfg.AdminListen); err != nil {
			return fail(fmt.Errorf("admin listen: %w", err))
		}
	}
	if s.cfg.TLS.Listen != "" {
		if l.HTTPS, l.QUIC, err = ListenHTTPS(s.cfg.TLS.Listen, s.cfg.TLS.HTTP3); err != nil {
			return fail(err)
		}
	}
	return s.ServeListeners(ctx, l)
}

// Serve serves HTTP/1.1 and h2c on ln and the admin endpoints on admin
// (which may be nil); see ServeListeners.
func (s *Server) Serve(ctx context.Context, ln, admin net.Listener) error {
	return s.ServeListeners(ctx, Listeners{HTTP: ln, Admin: admin})
}

// ServeListeners serves HTTP/1.1 (fasthttp) and h2c (net/http) on
// l.HTTP, HTTPS (HTTP/1.1 and HTTP/2) on l.HTTPS, HTTP/3 on l.QUIC and the
// admin endpoints on l.Admin until ctx ends, then drains connections
// within ShutdownTimeout, cancels fetches still running and waits for
// them.
func (s *Server) ServeListeners(ctx context.Context, l Listeners) error {
	ln, admin := l.HTTP, l.Admin
	bgCtx, cancelBG := context.WithCancel(context.WithoutCancel(ctx))
	s.handler.bgCtx = bgCtx
	defer s.close(cancelBG)

	// HTTP/1.1 on fasthttp, h2c on net/http, one port (see front_h1.go).
	mux := newProtoMux(ln, s.cfg.ReadHeaderTimeout, s.cfg.WriteTimeout, int(s.cfg.TCPNotSentLowat))
	mux.sendFileBytes = s.handler.metrics.sendFileBytes
	// HTTP/2 (h2c, and h2 over TLS) on the edge's own connection loop.
	h2srv := &h2.Server{
		Handler:              s.handler,
		MaxConcurrentStreams: uint32(s.cfg.TLS.MaxStreams),
		MaxHeaderListSize:    uint32(s.cfg.MaxHeaderBytes),
		StreamWindow:         1 << 20,
		ConnWindow:           4 << 20,
		IdleTimeout:          s.cfg.IdleTimeout,
		PrefaceTimeout:       s.cfg.ReadHeaderTimeout,
		StallTimeout:         s.cfg.WriteTimeout, // as for a write on HTTP/1.1
		ReadHeaderTimeout:    s.cfg.ReadHeaderTimeout,
		FloodBudget:          s.cfg.HTTP2.FloodBudget,
		ControlFrameRate:     s.cfg.HTTP2.ControlFrameRate,
		Metrics:              s.h2metrics,
		Log:                  s.log,
	}
	fsrv := &fasthttp.Server{
		Handler:               s.handler.serveH1,
		NoDefaultServerHeader: true,
		// The stored Date goes out as stored, as on h2 and h3 (RFC 9111
		// §4: a cache does not change it; Age tells the time in cache);
		// front_h1.go adds one to a response that has none.
		NoDefaultDate:        true,
		NoDefaultContentType: true,
		ReadBufferSize:       int(s.cfg.MaxHeaderBytes),
		MaxRequestBodySize:   int(s.cfg.MaxBodyBytes),
		// An idle keep-alive connection waits on a one-byte read and
		// holds no buffers; they come from pools when its next request
		// arrives (TestIdleH1ConnMemory bounds what it keeps). Otherwise
		// each idle connection would keep a max_header_bytes reader and a
		// write buffer. The price is that one-byte read per request.
		ReduceMemoryUsage: true,
		// The head must arrive within read_header_timeout (a client
		// trickling it byte by byte is cut then); the body then gets a
		// minute of its own.
		ReadTimeout: s.cfg.ReadHeaderTimeout,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: time.Minute}
		},
		IdleTimeout:     s.cfg.IdleTimeout,
		CloseOnShutdown: true,
		// Idle workers (and, after a stop, the pool's cleaner) go away
		// within this long.
		MaxIdleWorkerDuration: 2 * time.Second,
		ErrorHandler:          s.handler.h1Error,
		Logger:                slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	var servers []*http.Server
	errc := make(chan error, 6)
	serveFast := func(l net.Listener) {
		if err := fsrv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
			errc <- err
			return
		}
		errc <- http.ErrServerClosed
	}
	mux.run()
	go func() { errc <- h2srv.Serve(mux.h2) }()
	go serveFast(mux.h1)
	running := 2
	muxes := []*protoMux{mux}
	var h3 *http3.Server
	if l.HTTPS != nil && s.certs != nil {
		tc := s.certs.TLSConfig()
		tlsMux := newProtoMux(l.HTTPS, s.cfg.TLS.HandshakeTimeout, s.cfg.WriteTimeout, int(s.cfg.TCPNotSentLowat))
		tlsMux.tls, tlsMux.handshakes = tc, s.handler.metrics.tlsHandshakes
		tlsMux.run()
		muxes = append(muxes, tlsMux)
		go func() { errc <- h2srv.Serve(tlsMux.h2) }()
		go serveFast(tlsMux.h1)
		running += 2
		if l.QUIC != nil {
			_, port, _ := net.SplitHostPort(l.HTTPS.Addr().String())
			s.handler.altSvc = altSvc(port)
			h3 = s.h3Server(tc, 0)
			go serveQUIC(h3, l.QUIC, errc)
			running++
		}
		s.httpsAddr = l.HTTPS.Addr().String()
		certsCtx, stopCerts := context.WithCancel(bgCtx)
		certsDone := make(chan struct{})
		go func() {
			defer close(certsDone)
			s.certs.Run(certsCtx)
		}()
		defer func() {
			stopCerts()
			<-certsDone
		}()
	}
	if admin != nil {
		asrv := &http.Server{Handler: s.adminMux(), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, asrv)
		go func() { errc <- asrv.Serve(admin) }()
		running++
	}
	s.addr = ln.Addr().String()
	if admin != nil {
		s.adminAddr = admin.Addr().String()
	}
	var links sync.WaitGroup
	linkCtx, stopLinks := context.WithCancel(ctx)
	defer func() {
		stopLinks()
		links.Wait()
	}()
	if s.cfg.Control != nil {
		links.Go(func() { s.followControl(linkCtx) })
	}
	s.ready.Store(true)
	s.log.Info("edge listening", "addr", ln.Addr().String(), "name", s.cfg.Name, "region", s.cfg.Region)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.ready.Store(false)
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	for _, m := range muxes {
		m.ln.Close()
	}
	var wg sync.WaitGroup
	wg.Go(func() { fsrv.ShutdownWithContext(shutCtx) })
	wg.Go(func() { h2srv.Shutdown(shutCtx) })
	if h3 != nil {
		wg.Go(func() { shutdownQUIC(shutCtx, h3) })
	}
	for _, srv := range servers {
		wg.Go(func() {
			if serr := srv.Shutdown(shutCtx); serr != nil {
				srv.Close()
			}
		})
	}
	wg.Wait()
	for _, m := range muxes {
		m.close() // whatever did not drain in time
	}
	// Drain the remaining Serve results so no goroutine is left behind.
	for range running - boolInt(err != nil) {
		if e := <-errc; !errors.Is(e, http.ErrServerClosed) && !errors.Is(e, net.ErrClosed) && err == nil {
			err = e
		}
	}
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) close(cancelBG context.CancelFunc) {
	cancelBG()
	s.handler.closeBackground()
	s.mem.Close()
	if s.handler.disk != nil {
		if err := s.handler.disk.Close(); err != nil {
			s.log.Warn("closing the disk tier", "err", err)
		}
	}
	s.handler.origins.Close()
	s.handler.tier.Close()
	if s.handler.access != nil {
		s.handler.access.Close() // every line of the requests served
	}
	if s.certs != nil {
		s.certs.Close()
	}
	if s.certStore != nil {
		// Locks still held go now rather than at their TTL.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.certStore.Close(ctx)
		cancel()
	}
	if s.purges != nil {
		if err := s.purges.Close(); err != nil {
			s.log.Warn("closing the purge log", "err", err)
		}
	}
	s.log.Info("edge stopped", "name", s.cfg.Name)
}

func (s *Server) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", cdnmetrics.Handler(s.reg))
	// Profiles for the operator; the admin listener is loopback by default.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() || (s.cfg.Control != nil && (!s.sitesLoaded.Load() || !s.purgesCaughtUp() || !s.releasesSettled())) {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}

// releasesSettled reports whether every push site serves the release
// control names: a new or returning edge syncs them before it takes
// clients.
func (s *Server) releasesSettled() bool { return s.releases == nil || s.releases.Settled() }

// purgesCaughtUp reports whether the edge applied the purges it missed
// while away, or has waited long enough for them.
func (s *Server) purgesCaughtUp() bool {
	wait := cmp.Or(s.cfg.Control.PurgeCatchUp, 10*time.Second)
	return s.purges.CaughtUp() || s.handler.now().Sub(s.started) > wait
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
