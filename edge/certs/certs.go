package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/selfcdn/cdn/internal/site"
)

// Mode is how a site's certificate is obtained: the site's own TLS mode
// (internal/site), so a site's config needs no conversion.
type Mode = site.TLSMode

// The modes; None serves the site over plain HTTP only.
const (
	None  = site.TLSNone
	ACME  = site.TLSACME
	Files = site.TLSFiles
	Dev   = site.TLSDev
)

// acmeOnDemand is the ACME of names that only a wildcard site covers:
// obtained during the first handshake that asks for one. An exact name
// is obtained ahead, and renewed ahead, by the plain ACME config
// (certmagic neither obtains nor renews on-demand names in the background).
const acmeOnDemand Mode = "acme-on-demand"

// Site is what a site's certificate depends on.
type Site struct {
	Name  string
	Hosts []string
	Mode  Mode
	// CertFile and KeyFile are PEM files, for Files.
	CertFile, KeyFile string
}

// ACMEConfig is the ACME account sites in ACME mode share.
type ACMEConfig struct {
	// CA is the ACME directory URL. Default Let's Encrypt's.
	CA string
	// Email is the account's contact; the CA mails expiry warnings there.
	Email string
	// CARoot is a PEM file of roots for the CA's own HTTPS (a private CA
	// such as step-ca or pebble); empty uses the system's.
	CARoot string
	// HTTPPort and TLSPort are where the edge's listeners receive the
	// CA's http-01 and tls-alpn-01 challenges, when not 80 and 443 (a
	// port forward in front); certmagic answers through them.
	HTTPPort, TLSPort int
}

// Config configures a Manager.
type Config struct {
	// Storage is the directory for certificates, keys and ACME accounts,
	// and for every certificate when Shared is nil.
	Storage string
	// Shared, when set, holds the ACME certificates, account, challenge
	// tokens and locks instead of Storage: a store every edge of the
	// network uses (internal/certstore), so one order serves them all.
	// Development and file certificates stay in Storage.
	Shared certmagic.Storage
	// SharedReady is closed once Shared can be used (the edge's control
	// link bound it); ACME names are managed then, or after SharedWait
	// without it (from the copy of Shared kept in Storage, so an edge
	// restarted while NATS is down serves the certificates it had). Nil
	// means now.
	SharedReady <-chan struct{}
	// SharedWait is how long Run waits for SharedReady before serving
	// ACME names from the copy. Default 10s.
	SharedWait time.Duration
	// DevCA is the development CA's directory (made on first use).
	DevCA string
	ACME  ACMEConfig
	// NextProtos are the ALPN protocols the listener offers, in order.
	NextProtos []string
	// FileCheck is how often certificate files are checked for changes.
	// Default 5s.
	FileCheck time.Duration
	Logger    *slog.Logger
	Registry  prometheus.Registerer

	// renewCheck is how often certmagic checks whether certificates need
	// renewing; 0 keeps certmagic's default (10 minutes). Tests shorten it.
	renewCheck time.Duration
	// disableARI renews by the certificate's lifetime only, so a test
	// knows when renewal comes (ARI picks a random time in a window).
	disableARI bool
	// beforeOrder, if set, runs when certmagic is about to order a
	// certificate, under its lock (tests cut the holder off there).
	beforeOrder func(name string)
}

// lockConfirmer is a shared storage that can prove this process still
// holds a lock (internal/certstore).
type lockConfirmer interface {
	ConfirmLock(ctx context.Context, name string) error
}

// Manager picks each handshake's certificate by its server name.
type Manager struct {
	cfg Config
	log *slog.Logger
	// storage holds development certificates; acmeStorage ACME's (the
	// same unless Config.Shared is set).
	storage, acmeStorage certmagic.Storage
	metrics              *metrics

	acme, acmeWild, dev, files *certmagic.Config
	acmeIssuers                []*certmagic.ACMEIssuer
	caches                     map[Mode]*certmagic.Cache
	devCA                      *DevCA

	// tlsByMode are the listener configs each mode's handshakes use; an
	// unknown name gets refuse, which holds no certificate, so the client
	// gets an unrecognized_name alert and nothing is minted.
	tlsByMode map[Mode]*tls.Config
	refuse    *tls.Config

	hosts atomic.Pointer[hostTable]

	mu        sync.Mutex // protects what follows, and Update
	fileCerts map[string]*fileCert
	want      map[Mode][]string        // the names the sites need, by mode
	managed   map[Mode]map[string]bool // names handed to certmagic, by mode
	changed   chan struct{}            // Update tells Run
}

// New builds a Manager with no sites yet. It makes no network calls.
func New(cfg Config) (*Manager, error) {
	if cfg.Storage == "" {
		return nil, errors.New("certs: a storage directory is required")
	}
	if cfg.FileCheck <= 0 {
		cfg.FileCheck = 5 * time.Second
	}
	if cfg.SharedWait <= 0 {
		cfg.SharedWait = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		cfg: cfg, log: cfg.Logger,
		storage:   &certmagic.FileStorage{Path: cfg.Storage},
		metrics:   newMetrics(cfg.Registry),
		fileCerts: map[string]*fileCert{},
		managed:   map[Mode]map[string]bool{},
		changed:   make(chan struct{}, 1),
	}
	m.acmeStorage = m.storage
	if cfg.Shared != nil {
		m.acmeStorage = mirrored{shared: cfg.Shared, local: &certmagic.FileStorage{Path: filepath.Join(cfg.Storage, "shared-copy")}}
	}
	m.hosts.Store(&hostTable{})
	m.caches = map[Mode]*certmagic.Cache{}
	m.acme = m.newConfig(ACME)
	m.acmeWild = m.newConfig(acmeOnDemand)
	m.dev = m.newConfig(Dev)
	m.files = m.newConfig(Files)

	acme := certmagic.ACMEIssuer{
		CA: cfg.ACME.CA, Email: cfg.ACME.Email, Agreed: true,
		AltHTTPPort: cfg.ACME.HTTPPort, AltTLSALPNPort: cfg.ACME.TLSPort,
		Logger: zap.NewNop(),
	}
	if acme.CA == "" {
		acme.CA = certmagic.LetsEncryptProductionCA
	}
	if cfg.ACME.CARoot != "" {
		b, err := os.ReadFile(cfg.ACME.CARoot)
		if err != nil {
			return nil, fmt.Errorf("certs: acme ca_root: %w", err)
		}
		acme.TrustedRoots = x509.NewCertPool()
		if !acme.TrustedRoots.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("certs: acme ca_root %s: no PEM certificate", cfg.ACME.CARoot)
		}
	}
	for _, c := range []*certmagic.Config{m.acme, m.acmeWild} {
		// One account and one challenge store (storage), two configs.
		iss := certmagic.NewACMEIssuer(c, acme)
		c.Issuers = []certmagic.Issuer{iss}
		m.acmeIssuers = append(m.acmeIssuers, iss)
	}

	base := baseTLSConfig(cfg.NextProtos)
	m.tlsByMode = map[Mode]*tls.Config{}
	for mode, c := range map[Mode]*certmagic.Config{ACME: m.acme, acmeOnDemand: m.acmeWild, Dev: m.dev, Files: m.files} {
		tc := base.Clone()
		tc.GetCertificate = c.GetCertificate
		if mode == ACME || mode == acmeOnDemand {
			tc.NextProtos = append(slices.Clip(tc.NextProtos), "acme-tls/1")
		}
		m.tlsByMode[mode] = tc
	}
	m.refuse = base.Clone()
	return m, nil
}

// newConfig makes the certmagic config of one mode, with its own cache.
func (m *Manager) newConfig(mode Mode) *certmagic.Config {
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		RenewCheckInterval: m.cfg.renewCheck,
		Logger:             zap.NewNop(),
	})
	m.caches[mode] = cache
	storage := m.storage
	if mode == ACME || mode == acmeOnDemand {
		storage = m.acmeStorage
	}
	cfg = certmagic.New(cache, certmagic.Config{
		Storage: storage,
		Logger:  zap.NewNop(),
		OnEvent: func(ctx context.Context, event string, data map[string]any) error {
			return m.onEvent(ctx, mode, event, data)
		},
		DisableARI: m.cfg.disableARI,
	})
	if mode == Dev || mode == acmeOnDemand {
		cfg.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: func(_ context.Context, name string) error {
			if got, ok := m.hosts.Load().route(name); !ok || got != mode {
				return fmt.Errorf("no %s site serves %q", mode, name)
			}
			if mode == acmeOnDemand && net.ParseIP(name) != nil {
				return fmt.Errorf("no ACME certificate for the address %s", name)
			}
			return nil
		}}
	}
	return cfg
}

// TLSConfig is the listener's config: each handshake gets the config of
// its site's mode, or one that refuses it. Every one offers the same
// protocol versions, cipher suites and groups (see profile.go).
func (m *Manager) TLSConfig() *tls.Config {
	tc := baseTLSConfig(m.cfg.NextProtos)
	tc.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		mode, ok := m.hosts.Load().route(serverName(hello))
		if !ok || mode == None {
			m.metrics.refused.Inc()
			return m.refuse, nil
		}
		return m.tlsByMode[mode], nil
	}
	return tc
}

// serverName is the name a handshake asks for: its SNI, or without one
// (a URL with an IP address) the address it reached, as certmagic does.
func serverName(hello *tls.ClientHelloInfo) string {
	if hello.ServerName != "" {
		return strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	}
	if hello.Conn == nil {
		return ""
	}
	if a, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	if a, ok := hello.Conn.LocalAddr().(*net.UDPAddr); ok {
		return a.IP.String()
	}
	return ""
}

// HandleHTTPChallenge answers an ACME http-01 challenge request and
// reports whether r was one.
func (m *Manager) HandleHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	return m.acmeIssuers[0].HandleHTTPChallenge(w, r)
}

// DevCA returns the development CA, once a site in Dev mode opened it.
func (m *Manager) DevCA() *DevCA {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.devCA
}

// Update makes sites the ones served: files are loaded now, names no
// site has any more are dropped, and certificates for new names are
// obtained by Run, in the background. A site whose certificate cannot be
// had is reported in the error; the others are served.
func (m *Manager) Update(sites []Site) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	table := newHostTable(sites)
	m.hosts.Store(table)
	m.want = map[Mode][]string{}
	for _, s := range sites {
		switch s.Mode {
		case ACME, Dev:
			for _, h := range s.Hosts {
				if !strings.HasPrefix(h, "*") && (s.Mode == Dev || net.ParseIP(h) == nil) {
					m.want[s.Mode] = append(m.want[s.Mode], strings.ToLower(h))
				}
			}
		case Files:
			if err := m.loadFiles(context.Background(), s); err != nil {
				errs = append(errs, fmt.Errorf("site %s: %w", s.Name, err))
			}
		}
	}
	if table.hasMode(Dev) {
		if err := m.openDevCA(); err != nil {
			errs = append(errs, err)
			delete(m.want, Dev)
		}
	}
	m.dropFiles(sites)
	select {
	case m.changed <- struct{}{}:
	default:
	}
	return errors.Join(errs...)
}

// manageAll brings certmagic's managed names in line with the sites;
// ACME names only once acme says their storage can be used.
func (m *Manager) manageAll(ctx context.Context, acme bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	configs := map[Mode]*certmagic.Config{Dev: m.dev}
	if acme {
		configs[ACME] = m.acme
	}
	for mode, cfg := range configs {
		if err := m.manage(ctx, mode, cfg, m.want[mode]); err != nil {
			m.log.Error("certificates not managed", "err", err)
		}
	}
}

// manage hands new names to certmagic and forgets the ones gone.
func (m *Manager) manage(ctx context.Context, mode Mode, cfg *certmagic.Config, names []string) error {
	had := m.managed[mode]
	now := map[string]bool{}
	var add []string
	for _, n := range names {
		now[n] = true
		if !had[n] {
			add = append(add, n)
		}
	}
	var gone []certmagic.SubjectIssuer
	for n := range had {
		if !now[n] {
			gone = append(gone, certmagic.SubjectIssuer{Subject: n})
		}
	}
	if len(gone) > 0 {
		m.caches[mode].RemoveManaged(gone)
	}
	m.managed[mode] = now
	if len(add) == 0 {
		return nil
	}
	if err := cfg.ManageAsync(ctx, add); err != nil {
		return fmt.Errorf("%s certificates for %s: %w", mode, strings.Join(add, ", "), err)
	}
	return nil
}

func (m *Manager) openDevCA() error {
	if m.devCA != nil {
		return nil
	}
	if m.cfg.DevCA == "" {
		return errors.New("dev certificates: no dev_ca directory configured")
	}
	ca, err := OpenDevCA(m.cfg.DevCA)
	if err != nil {
		return err
	}
	m.devCA = ca
	m.dev.Issuers = []certmagic.Issuer{ca}
	return nil
}

// Run obtains and renews the sites' certificates and reloads certificate
// files that changed, until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.FileCheck)
	defer t.Stop()
	// Until the shared storage is bound, ordering would only fail (and
	// certmagic would wait a minute to retry): ACME names wait for it.
	shared := m.cfg.SharedReady
	acme := shared == nil
	var waited <-chan time.Time
	if !acme {
		wait := time.NewTimer(m.cfg.SharedWait)
		defer wait.Stop()
		waited = wait.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-shared:
			shared, waited, acme = nil, nil, true
			m.manageAll(ctx, acme)
		case <-waited:
			waited, acme = nil, true
			m.log.Warn("shared certificate storage not reachable; serving ACME certificates from the local copy")
			m.manageAll(ctx, acme)
		case <-m.changed:
			m.manageAll(ctx, acme)
		case <-t.C:
			m.reloadFiles(ctx)
		}
	}
}

// Close stops certmagic's maintenance.
func (m *Manager) Close() {
	for _, c := range m.caches {
		c.Stop()
	}
}

// onEvent logs and counts certmagic's events for the config of mode.
func (m *Manager) onEvent(ctx context.Context, mode Mode, event string, data map[string]any) error {
	if event == "cert_obtaining" && (mode == ACME || mode == acmeOnDemand) {
		return m.beforeOrder(ctx, data)
	}
	switch event {
	case "cert_obtained", "cert_failed", "cached_unmanaged_cert":
	default:
		return nil
	}
	m.metrics.events.WithLabelValues(event).Inc()
	attrs := []any{"event", event}
	for _, k := range []string{"identifier", "issuer", "renewal", "error", "sans"} {
		if v, ok := data[k]; ok {
			attrs = append(attrs, k, v)
		}
	}
	if event == "cert_failed" {
		m.log.Error("certificate not obtained", attrs...)
	} else {
		m.log.Info("certificate ready", attrs...)
	}
	return nil
}

// beforeOrder runs under the certificate's lock, just before certmagic
// places an ACME order: with shared storage, it proves the lock is
// still ours (a holder cut off from NATS whose lock may have passed to
// another edge orders nothing; certmagic retries later, takes the lock
// again and finds the certificate the other edge stored).
func (m *Manager) beforeOrder(ctx context.Context, data map[string]any) error {
	name, _ := data["identifier"].(string)
	if m.cfg.beforeOrder != nil {
		m.cfg.beforeOrder(name)
	}
	lc, ok := m.acmeStorage.(lockConfirmer)
	if !ok || name == "" {
		return nil
	}
	// certmagic's lock for obtaining and renewing name (its certIssueLockOp).
	if err := lc.ConfirmLock(ctx, "issue_cert_"+name); err != nil {
		m.metrics.events.WithLabelValues("order_held_back").Inc()
		m.log.Warn("certificate not ordered: its lock is not confirmed", "host", name, "err", err)
		return err
	}
	return nil
}

// hostTable maps server names to their site's mode.
type hostTable struct {
	exact    map[string]Mode
	wildcard map[string]Mode // by the part after "*."
	// anyHost is the mode of a "*" site; it answers only handshakes
	// without SNI (by the address reached), never arbitrary names.
	anyHost Mode
	hasAny  bool
}

func newHostTable(sites []Site) *hostTable {
	t := &hostTable{exact: map[string]Mode{}, wildcard: map[string]Mode{}}
	for _, s := range sites {
		for _, h := range s.Hosts {
			h = strings.ToLower(h)
			switch {
			case h == "*":
				t.anyHost, t.hasAny = s.Mode, true
			case strings.HasPrefix(h, "*."):
				t.wildcard[h[2:]] = s.Mode
			default:
				t.exact[h] = s.Mode
			}
		}
	}
	return t
}

// lookup returns the mode of the site that serves name, and whether one
// does; wild says the match was by a wildcard host.
func (t *hostTable) lookup(name string) (mode Mode, wild, ok bool) {
	if mode, ok := t.exact[name]; ok {
		return mode, false, true
	}
	if net.ParseIP(name) != nil {
		return t.anyHost, true, t.hasAny
	}
	if _, parent, ok := strings.Cut(name, "."); ok {
		if mode, ok := t.wildcard[parent]; ok {
			return mode, true, true
		}
	}
	return None, false, false
}

// route is lookup's answer as the config that serves it: ACME names a
// wildcard covers are obtained on demand.
func (t *hostTable) route(name string) (Mode, bool) {
	mode, wild, ok := t.lookup(name)
	if mode == ACME && wild {
		return acmeOnDemand, ok
	}
	return mode, ok
}

func (t *hostTable) hasMode(mode Mode) bool {
	for _, m := range t.exact {
		if m == mode {
			return true
		}
	}
	for _, m := range t.wildcard {
		if m == mode {
			return true
		}
	}
	return t.hasAny && t.anyHost == mode
}

type metrics struct {
	refused prometheus.Counter
	events  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdn_edge_tls_unknown_name_total",
			Help: "TLS handshakes refused (unrecognized_name) because no site serves the name asked for.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdn_edge_cert_events_total",
			Help: "Certificates obtained, failed or loaded from files, and orders held back because their lock was not confirmed.",
		}, []string{"event"}),
	}
	if reg != nil {
		reg.MustRegister(m.refused, m.events)
	}
	return m
}
