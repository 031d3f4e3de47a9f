package geodns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"

	"github.com/selfcdn/cdn/geodns/locate"
	"github.com/selfcdn/cdn/internal/deps"
	cdnmetrics "github.com/selfcdn/cdn/internal/metrics"
	"github.com/selfcdn/cdn/internal/natsauth"
)

// Deps are the logger (lifecycle events and the sampled query log),
// metrics registry and clock the caller gives geodns; nil fields get
// defaults.
type Deps = deps.Deps

// Server is one geodns instance. Instances share nothing but NATS, so any
// number can run side by side (as the NS records of a zone should).
type Server struct {
	cfg       Config
	log       *slog.Logger
	reg       *prometheus.Registry
	now       func() time.Time
	metrics   *metrics
	zones     *zoneSet
	locator   locate.Locator
	mmdb      *locate.MMDB // nil without a database
	limiter   *rateLimiter // nil when limiting is off
	answerTTL uint32

	table  atomic.Pointer[table]
	sample atomic.Uint64 // queries seen, for the query-log sample

	// mu guards the control state a table is built from.
	mu       sync.Mutex
	ctlState controlState
}

// maxTCPConns bounds concurrent TCP connections: TCP is the fallback for
// truncated answers, not the main path, and must not exhaust descriptors.
const maxTCPConns = 1024

// New checks cfg, loads the zones and the geo database, and returns a
// Server ready to Serve.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if c := cfg.Control; c != nil && c.Creds != "" {
		if err := natsauth.CheckCreds(c.Creds, natsauth.RoleGeoDNS, ""); err != nil {
			return nil, err
		}
	}
	d = d.WithDefaults()
	s := &Server{cfg: cfg, log: d.Logger, reg: d.Registry, now: d.Now,
		answerTTL: uint32(cfg.Answer.TTL / time.Second)}
	var err error
	if s.zones, err = loadZones(cfg.Zones); err != nil {
		return nil, err
	}
	for _, h := range cfg.Hosts {
		if s.zones.find(lowerName(dns.Fqdn(trimWildcard(h)))) == nil {
			return nil, fmt.Errorf("hosts: %s is in none of the zones", h)
		}
	}
	networks := map[netip.Prefix]string{}
	for _, n := range cfg.Geo.Networks {
		networks[netip.MustParsePrefix(n.CIDR)] = n.Region // validated
	}
	chain := locate.Chain{locate.NewCIDRMap(networks)}
	if cfg.Geo.MMDB != "" {
		if s.mmdb, err = locate.OpenMMDB(cfg.Geo.MMDB); err != nil {
			return nil, err
		}
		chain = append(chain, s.mmdb)
	}
	s.locator = chain
	s.limiter = newRateLimiter(cfg.RateLimit, s.now)
	s.metrics = newMetrics(s.reg)
	if cfg.Control == nil {
		s.setTable(newTable(cfg.Hosts, edgesFromConfig(cfg.Edges), true))
	} else {
		s.setTable(newTable(cfg.Hosts, nil, false))
	}
	return s, nil
}

func trimWildcard(h string) string {
	if len(h) > 2 && h[:2] == "*." {
		return h[2:]
	}
	return h
}

// setTable swaps in t, with an empty answer cache, and updates the
// gauges that describe it.
func (s *Server) setTable(t *table) {
	t.answers = newAnswerCache(int64(s.cfg.Answer.CacheBytes))
	s.table.Store(t)
	for state, n := range map[string]int{"healthy": t.healthy, "down": t.down, "draining": t.draining, "unknown": t.unknown} {
		s.metrics.edges.WithLabelValues(state).Set(float64(n))
	}
	s.metrics.updated.Set(float64(s.now().UnixNano()) / 1e9)
}

// Ready says whether edge answers can be given: always without control,
// once control's state has been read with it.
func (s *Server) Ready() bool { return s.table.Load().ready }

// Serve answers DNS on pc (UDP) and ln (TCP), and serves /metrics and
// /readyz on admin (nil: none), until ctx ends; then it stops taking
// queries and lets those in flight finish. It closes what it is given.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener, admin net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if s.cfg.Control != nil {
		wg.Go(func() { s.followControl(ctx) })
	}
	if s.mmdb != nil {
		s.logMMDB("geo database loaded")
		wg.Go(func() { s.watchMMDB(ctx) })
	}
	defer wg.Wait()

	tcp := &dns.Server{Listener: netutil.LimitListener(ln, maxTCPConns), Handler: s, MsgAcceptFunc: acceptQuery,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		IdleTimeout:    func() time.Duration { return s.cfg.TCPIdleTimeout },
		MsgInvalidFunc: func([]byte, error) { s.metrics.malformed.Inc() }}
	errc := make(chan error, 3)
	udpStop, udpDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(udpDone)
		if err := s.serveUDP(pc, udpStop); err != nil {
			errc <- fmt.Errorf("udp: %w", err)
		}
	}()
	tcpDone := make(chan struct{})
	go func() {
		defer close(tcpDone)
		errc <- tcp.ActivateAndServe()
	}()
	var hsrv *http.Server
	if admin != nil {
		hsrv = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := hsrv.Serve(admin); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin: %w", err)
			}
		}()
	}
	s.log.Info("geodns listening", "udp", pc.LocalAddr().String(), "tcp", ln.Addr().String(),
		"zones", len(s.zones.zones), "control", s.cfg.Control != nil)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("dns server: %w", err)
	}
	cancel()
	shut, done := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer done()
	close(udpStop) // the UDP workers finish the batch in hand and stop
	if tcp.ShutdownContext(shut) != nil {
		// Not started yet: closing the listener makes it return as soon
		// as it does start.
		ln.Close()
	}
	<-udpDone
	<-tcpDone
	if hsrv != nil {
		hsrv.Shutdown(shut)
	}
	return err
}

// udpReadSize is the largest UDP query read whole; a larger one is cut
// and answered FORMERR.
const udpReadSize = 4096

// acceptQuery lets through only queries: responses are dropped (answering
// them invites loops), other opcodes get NOTIMP, and a packet with other
// than one question, or more records than a query carries, gets FORMERR.
func acceptQuery(h dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	switch {
	case h.Bits&qr != 0:
		return dns.MsgIgnore
	case int(h.Bits>>11)&0xF != dns.OpcodeQuery:
		return dns.MsgRejectNotImplemented
	case h.Qdcount != 1, h.Ancount != 0, h.Nscount != 0, h.Arcount > 2:
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// ServeDNS answers one query over TCP (UDP has its own loop, udp.go).
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if m := s.serve(req, addrOf(w.RemoteAddr()), true); m != nil {
		if err := w.WriteMsg(m); err != nil {
			s.log.Debug("write response", "client", w.RemoteAddr().String(), "err", err)
		}
	}
}

// serve answers req from src: build the response, limit the rate (UDP),
// fit it to the client's size (UDP), count. Nil means send nothing.
func (s *Server) serve(req *dns.Msg, src netip.Addr, tcp bool) *dns.Msg {
	m, _, _ := s.serveFrom(req, src, tcp, s.table.Load())
	return m
}

// serveFrom is serve from table t; reusable says the response may be
// packed once and sent again for the same question from the same place
// (answercache.go): it was sent whole, and any edges drawn at random
// can be drawn again on reuse.
func (s *Server) serveFrom(req *dns.Msg, src netip.Addr, tcp bool, t *table) (m *dns.Msg, res result, reusable bool) {
	n, start := s.begin()
	m, res = s.respond(req, src, t)
	v := send
	if !tcp && s.limiter != nil {
		v = s.limit(src, res)
	}
	m = s.finish(m, res, v, src, tcp, n, start)
	return m, res, m != nil && v == send && !m.Truncated && (!res.drawn || res.redraw != nil) && !tcp
}

// begin numbers a query, and starts its clock when it is one of the
// sampled for the latency histogram.
func (s *Server) begin() (n uint64, start time.Time) {
	n = s.sample.Add(1)
	return n, sampleStart(n)
}

// sampleStart is the start of query n's clock if it is one of the 1 in
// 64 sampled for the latency histogram, and zero if not.
func sampleStart(n uint64) time.Time {
	if n%64 != 0 {
		return time.Time{}
	}
	return time.Now()
}

// limit is the rate limiter's verdict on the response res to src.
func (s *Server) limit(src netip.Addr, res result) verdict {
	name, ecs := res.name, res.ecs
	switch {
	case res.rcode == dns.RcodeNameError:
		name = res.zone // random names under one zone count together
	case res.rcode != dns.RcodeSuccess:
		name = "" // refusals and errors: one bucket per network, whatever the name
	case res.limitName != "":
		name = res.limitName
	}
	if !ecs.IsValid() || res.scope == 0 {
		ecs = netip.Prefix{} // the answer is the same for every subnet: they share a bucket
	} else if res.scope < ecs.Bits() {
		ecs, _ = ecs.Addr().Prefix(res.scope) // the same for the whole scope
	}
	return s.limiter.check(src, ecs, name, res.qtype)
}

// finish applies the limiter's verdict v to m (nil: dropped), fits a
// UDP response to the client's size, and counts the query n begun at
// start.
func (s *Server) finish(m *dns.Msg, res result, v verdict, src netip.Addr, tcp bool, n uint64, start time.Time) *dns.Msg {
	switch v {
	case drop:
		s.metrics.limited.WithLabelValues("drop").Inc()
		return nil
	case slip:
		s.metrics.limited.WithLabelValues("slip").Inc()
		m.Answer, m.Ns, m.Truncated = nil, nil, true
		m.Extra = m.Extra[:0]
		s.finishEDNS(m, res.opt, nil, 0)
	}
	if !tcp {
		size := dns.MinMsgSize
		if res.opt != nil {
			size = min(max(int(res.opt.UDPSize()), dns.MinMsgSize), s.cfg.MaxUDPSize)
		}
		// Most answers fit uncompressed; packing them so skips building
		// the compression map, the costliest step of a pack.
		m.Compress = false
		if m.Len() > size {
			m.Truncate(size) // compresses, and drops records only if it must
			if m.Truncated {
				s.metrics.truncated.Inc()
			}
		}
	}
	s.count(res, tcp, nil)
	s.end(src, tcp, res, n, start)
	return m
}

// end records a query's latency and logs it, each when sampled.
func (s *Server) end(src netip.Addr, tcp bool, res result, n uint64, start time.Time) {
	if !start.IsZero() {
		s.metrics.latency.Observe(time.Since(start).Seconds())
	}
	if k := s.cfg.QueryLogSample; k > 0 && n%uint64(k) == 0 {
		s.logQuery(src, tcp, res)
	}
}

// count adds the query res to the metrics; c, when not nil, holds the
// counters of res's labels already found (a cached answer's).
func (s *Server) count(res result, tcp bool, c *answerCounters) {
	if c == nil {
		c = s.counters(res, tcp)
	}
	if res.ecs.IsValid() {
		s.metrics.ecs.Inc()
	}
	s.countAnswers(res, c, 1)
}

// countAnswers adds n answers like res, counted in c, to the metrics
// (but for the ECS count, which goes by query).
func (s *Server) countAnswers(res result, c *answerCounters, n uint64) {
	c.queries.Add(float64(n))
	if !res.geo {
		return
	}
	if res.failOpen {
		s.metrics.failOpen.Add(float64(n))
	}
	c.region.Add(float64(n))
	s.metrics.answerEdges.add(res.edges, n)
}

// answerCounters are the labelled counters one response adds to.
type answerCounters struct {
	queries prometheus.Counter // cdn_geodns_queries_total{proto,qtype,rcode}
	region  prometheus.Counter // cdn_geodns_edge_answers_total{region}; nil unless res.geo
}

func (s *Server) counters(res result, tcp bool) *answerCounters {
	c := &answerCounters{queries: s.metrics.queryCounter(tcp, res.qtype, res.rcode)}
	if res.geo {
		region := res.region
		switch {
		case res.failOpen:
			region = "fail_open"
		case region == "":
			region = "any"
		}
		c.region = s.metrics.regionCounter(region)
	}
	return c
}

func (s *Server) logQuery(src netip.Addr, tcp bool, res result) {
	attrs := []slog.Attr{slog.String("client", src.String()), slog.Bool("tcp", tcp), slog.String("name", res.name),
		slog.String("type", dns.TypeToString[res.qtype]), slog.String("rcode", rcodeLabel(res.rcode))}
	if res.ecs.IsValid() {
		attrs = append(attrs, slog.String("ecs", res.ecs.String()))
	}
	if res.geo {
		attrs = append(attrs, slog.String("region", res.region), slog.Int("edges", res.edges), slog.Bool("fail_open", res.failOpen))
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "query", attrs...)
}

// adminHandler serves /metrics, /healthz and /readyz.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", cdnmetrics.Handler(s.reg))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.Ready() {
			http.Error(w, "waiting for control's edge state", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux
}

// watchMMDB reloads the geo database when its file changes (geoipupdate
// replaces it in place), checking every mmdbCheck.
func (s *Server) watchMMDB(ctx context.Context) {
	stat := func() time.Time {
		if fi, err := os.Stat(s.cfg.Geo.MMDB); err == nil {
			return fi.ModTime()
		}
		return time.Time{}
	}
	last := stat()
	t := time.NewTicker(mmdbCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if mod := stat(); !mod.IsZero() && !mod.Equal(last) {
			last = mod
			if err := s.mmdb.Reload(); err != nil {
				s.log.Warn("geo database changed but does not load; keeping the old one", "err", err)
				continue
			}
			s.logMMDB("geo database reloaded")
		}
	}
}

const mmdbCheck = 30 * time.Second

// logMMDB says which geo database is in use: at 3 a.m. the question is
// whether the file geoipupdate wrote is the one answering.
func (s *Server) logMMDB(msg string) {
	md := s.mmdb.Metadata()
	s.log.Info(msg, "path", s.cfg.Geo.MMDB, "type", md.DatabaseType,
		"built", time.Unix(int64(md.BuildEpoch), 0).UTC().Format(time.DateOnly), "nodes", md.NodeCount)
}

// Run listens on the configured addresses and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	pc, ln, err := Listen(s.cfg.Listen)
	if err != nil {
		return err
	}
	var admin net.Listener
	if s.cfg.AdminListen != "" {
		if admin, err = net.Listen("tcp", s.cfg.AdminListen); err != nil {
			pc.Close()
			ln.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
	}
	return s.Serve(ctx, pc, ln, admin)
}

// Listen opens UDP and TCP on addr, the same port for both: port 0 takes
// a free TCP port and then the same UDP port (trying again if taken).
func Listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen %q: %w", addr, err)
	}
	for range 20 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen tcp: %w", err)
		}
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, portOf(ln.Addr())))
		if err == nil {
			return pc, ln, nil
		}
		ln.Close()
		if port != "0" {
			return nil, nil, fmt.Errorf("listen udp: %w", err)
		}
	}
	return nil, nil, fmt.Errorf("listen %s: no port free for both TCP and UDP", addr)
}

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}
