package origin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Pool owns what origin groups share: one connection pool per origin
// endpoint (scheme, host:port and TLS server name), and per target its
// circuit breaker and health checker. A target's state outlives the
// groups that use it, so a site rebuilt by a configuration reload with
// the same origin keeps its connections, breaker and health.
// It is safe for concurrent use; the zero value is not: use NewPool.
type Pool struct {
	cfg Config
	log *slog.Logger
	m   *metrics
	now func() time.Time
	// roots are the CAs trusted for https origins; nil = the system's.
	// Tests set it before the first Group.
	roots *x509.CertPool

	ctx    context.Context // parent of every health check; ends at Close
	cancel context.CancelFunc

	mu      sync.Mutex // protects the fields below
	members map[memberKey]*member
	conns   map[connKey]*conn
	closed  bool
}

// NewPool returns an empty pool. cfg tunes every origin connection (zero
// fields take the defaults); metrics go to reg (nil: none); log receives
// breaker and health changes.
func NewPool(cfg Config, reg prometheus.Registerer, log *slog.Logger) *Pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{
		cfg: cfg.WithDefaults(), log: log, m: newMetrics(reg), now: time.Now,
		ctx: ctx, cancel: cancel,
		members: make(map[memberKey]*member), conns: make(map[connKey]*conn),
	}
}

// connKey names an origin endpoint: what makes two connections
// interchangeable.
type connKey struct {
	scheme, hostport, sni string
}

// conn is one endpoint's connection pool.
type conn struct {
	tr     *http.Transport
	client *http.Client
}

// memberKey is a target's identity: two groups whose targets have the
// same key share its breaker and checker.
type memberKey struct {
	prefix, host, sni, name string
	clientHost              bool
	health                  HealthCheck
	breaker                 Breaker
}

// member is one target's shared state.
type member struct {
	key    memberKey
	label  string // the metrics "origin" label
	prefix string // scheme://host[:port][/path], no trailing slash
	conn   *conn
	br     *breaker
	check  *checker // nil without active checks
}

// healthy reports whether active checks (if any) find the target up.
func (m *member) healthy() bool { return m.check == nil || !m.check.down.Load() }

// errPoolClosed is returned by Group after Close.
var errPoolClosed = errors.New("origin pool closed")

// Group returns a group sending requests to gc's targets, or an error
// naming each bad field of gc. Targets that an earlier group of this pool
// has too (same URL, Host, SNI, name, health checks and breaker settings)
// share that group's connections, breaker and health. Health checks of
// new targets start now.
func (p *Pool) Group(gc GroupConfig) (*Group, error) {
	gc = gc.WithDefaults()
	if err := gc.Validate(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errPoolClosed
	}
	g := &Group{site: gc.Site, pool: p, targets: make([]groupTarget, len(gc.Targets))}
	for _, s := range gc.FailoverStatuses {
		g.failover[s-400] = true
	}
	for i, t := range gc.Targets {
		m := p.memberLocked(t, gc)
		gt := groupTarget{member: m, index: i, backup: t.Backup}
		for r := range numResults {
			gt.results[r] = p.m.requests.WithLabelValues(gc.Site, m.label, resultNames[r])
		}
		g.targets[i] = gt
	}
	return g, nil
}

// memberLocked returns the shared state of target t, creating it (and
// starting its checks) if no live group has it. p.mu must be held.
func (p *Pool) memberLocked(t Target, gc GroupConfig) *member {
	u, _ := url.Parse(t.URL) // Validate parsed it
	key := memberKey{
		prefix: strings.TrimSuffix(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"),
		host:   t.Host, sni: t.SNI, name: t.Name, clientHost: t.ClientHost,
		health: gc.Health, breaker: gc.Breaker,
	}
	if m, ok := p.members[key]; ok {
		return m
	}
	m := &member{key: key, label: t.Name, prefix: key.prefix}
	if m.label == "" {
		m.label = u.Host
	}
	ck := connKey{scheme: u.Scheme, hostport: u.Host}
	if u.Scheme == "https" {
		ck.sni = serverName(t, u)
	}
	m.conn = p.conns[ck]
	if m.conn == nil {
		var tlsConf *tls.Config
		if ck.sni != "" {
			tlsConf = &tls.Config{ServerName: ck.sni, RootCAs: p.roots, MinVersion: tls.VersionTLS12}
		}
		tr := newTransport(p.cfg, tlsConf)
		m.conn = &conn{tr: tr, client: newClient(tr)}
		p.conns[ck] = m.conn
	}
	label := m.label
	m.br = newBreaker(gc.Breaker, p.m.breaker.WithLabelValues(label), func(from, to breakerState) {
		level := slog.LevelInfo
		if to == stateOpen {
			level = slog.LevelWarn
		}
		p.log.LogAttrs(context.Background(), level, "origin breaker "+to.String(),
			slog.String("origin", label), slog.String("from", from.String()))
	})
	if gc.Health.Path != "" {
		ctx, cancel := context.WithCancel(p.ctx)
		c := &checker{
			url: key.prefix + gc.Health.Path, host: t.Host, label: label, hc: gc.Health,
			client: m.conn.client, gauge: p.m.health.WithLabelValues(label), log: p.log,
			cancel: cancel, done: make(chan struct{}),
		}
		c.gauge.Set(1)
		m.check = c
		go c.run(ctx) // owned by the pool: Retain or Close stops and waits for it
	}
	p.members[key] = m
	return m
}

// serverName is the TLS server name for t: SNI, else the Host it sends,
// else the URL's host.
func serverName(t Target, u *url.URL) string {
	switch {
	case t.SNI != "":
		return t.SNI
	case t.Host != "" && !t.ClientHost:
		if h, _, err := net.SplitHostPort(t.Host); err == nil {
			return h
		}
		return strings.Trim(t.Host, "[]")
	}
	return u.Hostname()
}

// Retain makes groups the pool's whole set of live groups: targets that
// none of them uses lose their health checks (Retain waits for them to
// stop) and their idle connections. Call it after building every group of
// a reload, with all of them; a group left out keeps working, but its
// dropped targets are no longer checked and no longer shared with groups
// built later. Requests in flight are not interrupted.
func (p *Pool) Retain(groups ...*Group) {
	keep := make(map[*member]bool)
	for _, g := range groups {
		for _, t := range g.targets {
			keep[t.member] = true
		}
	}
	p.mu.Lock()
	var dropped []*member
	for k, m := range p.members {
		if !keep[m] {
			delete(p.members, k)
			dropped = append(dropped, m)
		}
	}
	usedConns := make(map[*conn]bool)
	labels := make(map[string]bool)
	for _, m := range p.members {
		usedConns[m.conn] = true
		labels[m.label] = true
	}
	var idle []*conn
	for k, c := range p.conns {
		if !usedConns[c] {
			delete(p.conns, k)
			idle = append(idle, c)
		}
	}
	p.mu.Unlock()
	for _, m := range dropped {
		if m.check != nil {
			m.check.stop()
		}
		if !labels[m.label] {
			// A gauge of an origin nobody uses would lie forever.
			p.m.breaker.DeleteLabelValues(m.label)
			p.m.health.DeleteLabelValues(m.label)
		}
	}
	for _, c := range idle {
		c.tr.CloseIdleConnections()
	}
}

// Close stops every health check and closes idle connections. Groups
// built before keep working, without health checks; Group returns an
// error.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	members, conns := p.members, p.conns
	p.members, p.conns = map[memberKey]*member{}, map[connKey]*conn{}
	p.mu.Unlock()
	p.cancel()
	for _, m := range members {
		if m.check != nil {
			m.check.stop()
		}
	}
	for _, c := range conns {
		c.tr.CloseIdleConnections()
	}
}
