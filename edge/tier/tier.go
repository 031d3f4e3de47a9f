package tier

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/internal/sketch"
	"github.com/selfcdn/cdn/origin"
)

// hotKeys sizes the sketch of keys missed at this edge: the width the
// tier's sketch has always had (256 KiB).
const hotKeys = 1 << 16

// Config tunes the tier. Zero fields take the defaults.
type Config struct {
	// Off keeps every fill local: the edge asks no peer (it still
	// answers those that ask it).
	Off bool `yaml:"off"`
	// PeerURL is the base URL other edges send this one their requests
	// at. Default: the edge's public URL when it is plain http.
	PeerURL string `yaml:"peer_url"`
	// Rampup is how long an edge that came up takes to carry its full
	// share of keys. Default 30s.
	Rampup time.Duration `yaml:"rampup"`
	// LoadFactor bounds the requests outstanding at one peer against the
	// mean over the region's peers (a bound never under 8). Default 1.25.
	LoadFactor float64 `yaml:"load_factor"`
	// Timeout is how long a peer has to start its answer before it is
	// skipped for this fill. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// HotAfter is how many misses for one key an edge sees before it
	// keeps its own copy of what the key's home answers; 1 keeps every
	// one. Default 2.
	HotAfter int `yaml:"hot_after"`
	// Name is the network's name in CDN-Loop. Default "selfcdn".
	Name string `yaml:"name"`
	// HopBudget is how many CDN-Loop elements with Name a request may
	// carry and still be forwarded: edge, home and shield legitimately
	// add three. Default 3.
	HopBudget int `yaml:"hop_budget"`
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Rampup == 0 {
		c.Rampup = 30 * time.Second
	}
	if c.LoadFactor == 0 {
		c.LoadFactor = 1.25
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.HotAfter == 0 {
		c.HotAfter = 2
	}
	if c.Name == "" {
		c.Name = "selfcdn"
	}
	if c.HopBudget == 0 {
		c.HopBudget = 3
	}
	return c
}

// Validate reports settings out of range.
func (c Config) Validate() error {
	var errs []error
	if c.Rampup < 0 || c.Timeout < 0 {
		errs = append(errs, errors.New("tier: rampup and timeout must be >= 0"))
	}
	if c.LoadFactor != 0 && c.LoadFactor < 1 {
		errs = append(errs, fmt.Errorf("tier: load_factor must be >= 1, got %g", c.LoadFactor))
	}
	if c.HotAfter < 0 || c.HopBudget < 0 {
		errs = append(errs, errors.New("tier: hot_after and hop_budget must be >= 0"))
	}
	if c.HopBudget != 0 && c.HopBudget < 2 {
		errs = append(errs, fmt.Errorf("tier: hop_budget %d leaves no room for edge and home", c.HopBudget))
	}
	return errors.Join(errs...)
}

// Hop is one peer a fill asks, and for which stage.
type Hop struct {
	Peer  Member
	Stage Stage
}

// Tier routes one edge's misses through its region's homes and the
// shield. It is safe for concurrent use.
type Tier struct {
	cfg          Config
	self, region string
	view         atomic.Pointer[View]
	secret       atomic.Pointer[[]byte]
	fetcher      *origin.Fetcher
	hot          *sketch.Sketch
	now          func() time.Time
	metrics      *metrics
	// applied is the purge version this edge applied; nil: it follows
	// no purge log, and neither says nor checks one.
	applied atomic.Pointer[func() uint64]

	mu    sync.Mutex // protects peers
	peers map[string]*peerState
}

// peerState is what this edge knows of one peer from asking it.
type peerState struct {
	inflight int
	failures int       // in a row
	until    time.Time // skipped until then after failures
}

// minBound is the fewest requests outstanding at a peer that count as
// loaded.
const minBound = 8

// peerFailures in a row make a peer skipped for peerCooldown.
const (
	peerFailures = 3
	peerCooldown = 5 * time.Second
)

// New returns a tier for the edge self in region, with an empty view
// (every fill local) until SetView.
func New(cfg Config, self, region string, reg prometheus.Registerer) *Tier {
	cfg = cfg.WithDefaults()
	t := &Tier{
		cfg: cfg, self: self, region: region, hot: sketch.New(hotKeys), now: time.Now, metrics: newMetrics(reg),
		peers: map[string]*peerState{},
		fetcher: origin.NewFetcher(origin.Config{
			ConnectTimeout: min(cfg.Timeout, time.Second), HeaderTimeout: cfg.Timeout, MaxIdleConns: 64,
		}),
	}
	t.view.Store(NewView(nil))
	return t
}

// SetView swaps in a new membership.
func (t *Tier) SetView(v *View) {
	t.view.Store(v)
	t.metrics.epoch.Set(float64(v.Epoch() >> 11)) // float64 holds 53 bits
	t.metrics.homes.Set(float64(len(v.Homes(t.region))))
}

// View returns the current membership.
func (t *Tier) View() *View { return t.view.Load() }

// SetSecret sets the edge-to-edge secret; without one the edge neither
// asks peers nor takes any request for a peer's.
func (t *Tier) SetSecret(secret []byte) { t.secret.Store(&secret) }

// SetPurges gives the tier the edge's applied purge version, which it
// sends with every request to a peer and compares a peer's with.
func (t *Tier) SetPurges(applied func() uint64) { t.applied.Store(&applied) }

// purges is the applied purge version, and whether the edge has one.
func (t *Tier) purges() (uint64, bool) {
	if p := t.applied.Load(); p != nil {
		return (*p)(), true
	}
	return 0, false
}

// Behind reports whether this edge has applied fewer purges than the
// peer whose mark m is: whatever it holds may be purged for the peer, so
// it must not answer from its cache (the peer goes on to its next hop).
func (t *Tier) Behind(m Mark) bool {
	v, ok := t.purges()
	if !ok || m.Purges <= v {
		return false
	}
	t.metrics.behind.Inc()
	return true
}

func (t *Tier) key() []byte {
	if p := t.secret.Load(); p != nil {
		return *p
	}
	return nil
}

// Close drops idle connections to peers.
func (t *Tier) Close() { t.fetcher.Close() }

// Plan lists the peers a fill for key tries, in order, before the
// origin: the key's home in this region (unless this edge is it), then
// the home in the site's shield region (or the region with homes nearest
// to it), unless this region is the shield. A request that came from a
// peer goes on only to a later stage.
func (t *Tier) Plan(key, shield string, in Stage) []Hop {
	if t.cfg.Off || len(t.key()) == 0 || in == StageShield {
		return nil
	}
	v := t.view.Load()
	now := t.now()
	var hops []Hop
	if in == StageNone {
		if home, ok := t.pick(v.Rank(t.region, key, now, t.cfg.Rampup), 1); ok {
			hops = append(hops, Hop{home[0], StageHome})
		}
	}
	if shield == "" {
		return hops
	}
	region := v.Nearest(shield)
	if region == "" || region == t.region {
		return hops
	}
	// Two of the shield region's homes: its second is still one fetch
	// for the network when the first fails.
	if homes, ok := t.pick(v.Rank(region, key, now, t.cfg.Rampup), 2); ok {
		for _, m := range homes {
			hops = append(hops, Hop{m, StageShield})
		}
	}
	return hops
}

// pick takes up to n peers from ranked, best first, skipping those
// failing or loaded past the bound; it stops at this edge itself (a
// home that is us needs no hop). ok is false when none is left.
func (t *Tier) pick(ranked []Member, n int) ([]Member, bool) {
	if len(ranked) == 0 {
		return nil, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	total := 0
	for _, m := range ranked {
		if p := t.peers[m.Name]; p != nil {
			total += p.inflight
		}
	}
	// Bounded load: no peer holds more than LoadFactor times its fair
	// share of what this edge has outstanding, counting the new one, and
	// never fewer than minBound: at a few requests the bound would be 1,
	// and a home still finishing the last answer would lose the next key.
	bound := max(int(math.Ceil(t.cfg.LoadFactor*float64(total+1)/float64(len(ranked)))), minBound)
	now := t.now()
	var out []Member
	for _, m := range ranked {
		if m.Name == t.self {
			break
		}
		p := t.peers[m.Name]
		if p != nil && (now.Before(p.until) || p.inflight+1 > bound) {
			t.metrics.skipped.Inc()
			continue
		}
		if out = append(out, m); len(out) == n {
			break
		}
	}
	return out, len(out) > 0
}

// Ask sends req (its method, header and context) for path and query uri
// to the hop's peer, marked and signed. A peer that fails to answer
// counts toward being skipped; the caller moves on to the next hop.
func (t *Tier) Ask(hop Hop, req *http.Request, uri string) (*http.Response, error) {
	out := req.Clone(req.Context())
	u, err := out.URL.Parse(hop.Peer.URL + uri)
	if err != nil {
		return nil, fmt.Errorf("peer %s: url: %w", hop.Peer.Name, err)
	}
	out.URL, out.RequestURI = u, ""
	out.Header[PeerHeader] = []string{markValue(t.key(), t.self, hop.Stage, t.view.Load().Epoch(), t.now(), out.Host, uri)}
	if v, ok := t.purges(); ok {
		out.Header[PurgesHeader] = []string{strconv.FormatUint(v, 10)}
	}
	t.begin(hop.Peer.Name)
	res, err := t.fetcher.Do(out)
	if err != nil {
		t.end(hop.Peer.Name, false)
		t.metrics.asked.WithLabelValues(hop.Stage.String(), "error").Inc()
		return nil, fmt.Errorf("peer %s: %w", hop.Peer.Name, err)
	}
	t.metrics.asked.WithLabelValues(hop.Stage.String(), "answered").Inc()
	res.Body = &peerBody{ReadCloser: res.Body, done: func(ok bool) { t.end(hop.Peer.Name, ok) }}
	return res, nil
}

func (t *Tier) begin(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[name]
	if p == nil {
		p = &peerState{}
		t.peers[name] = p
	}
	p.inflight++
}

// end records an ask's end: ok means it answered in full.
func (t *Tier) end(name string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[name]
	p.inflight--
	if ok {
		p.failures, p.until = 0, time.Time{}
		return
	}
	if p.failures++; p.failures >= peerFailures {
		p.until = t.now().Add(peerCooldown)
	}
}

// Decline closes a peer's answer the caller will not use though the
// peer is healthy (its origin failed, it does not know the site yet): it
// does not count toward skipping the peer.
func (t *Tier) Decline(res *http.Response) {
	if b, ok := res.Body.(*peerBody); ok {
		b.once.Do(func() { b.done(true) })
	}
	res.Body.Close()
}

// peerBody reports the end of a peer's answer once: read to the end is
// a success, anything else a failure.
type peerBody struct {
	io.ReadCloser
	done func(ok bool)
	eof  bool
	once sync.Once
}

func (b *peerBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	} else if err != nil {
		b.once.Do(func() { b.done(false) })
	}
	return n, err
}

func (b *peerBody) Close() error {
	b.once.Do(func() { b.done(b.eof) })
	return b.ReadCloser.Close()
}

// Received checks the CDN-Peer field of a request for host and uri (the
// request target as received), and reads the purge version beside it.
// It returns the verified mark, or StageNone for anything else: a
// client's request, forged marks included, which the caller treats as
// any client's.
func (t *Tier) Received(hdr http.Header, host, uri string) Mark {
	values := hdr[PeerHeader]
	if len(values) == 0 {
		return Mark{}
	}
	m, ok := verifyMark(t.key(), values[0], t.now(), host, uri)
	if !ok || len(values) > 1 {
		t.metrics.forged.Inc()
		return Mark{}
	}
	if m.Epoch != t.view.Load().Epoch() {
		t.metrics.epochMismatch.Inc()
	}
	if p := hdr[PurgesHeader]; len(p) == 1 {
		m.Purges, _ = strconv.ParseUint(p[0], 10, 64) // unreadable: says nothing
	}
	return m
}

// Looped reports whether a request carrying these CDN-Loop fields went
// round too often to be forwarded again.
func (t *Tier) Looped(values []string) bool {
	return len(values) > 0 && LoopCount(values, t.cfg.Name) >= t.cfg.HopBudget
}

// Loops counts this network's elements in CDN-Loop fields.
func (t *Tier) Loops(values []string) int { return LoopCount(values, t.cfg.Name) }

// LoopValue is this network's CDN-Loop element.
func (t *Tier) LoopValue() string { return t.cfg.Name }

// Hot counts a miss for key answered by its home and reports whether
// this edge should keep a copy too: only keys it is asked for often,
// so the region keeps one copy of its long tail.
func (t *Tier) Hot(key string) bool {
	return t.hot.Add(xxhash.Sum64String(key)) >= t.cfg.HotAfter
}

// metrics are the tier's Prometheus series.
type metrics struct {
	asked           *prometheus.CounterVec
	skipped, forged prometheus.Counter
	epochMismatch   prometheus.Counter
	behind          prometheus.Counter
	epoch, homes    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		asked: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdn_peer_asked_total",
			Help: "Fills this edge sent to a peer, by stage (home, shield) and result (answered, error)."}, []string{"stage", "result"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_peer_skipped_total",
			Help: "Peers passed over for a fill: failing, or loaded past the bound."}),
		forged: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_peer_marks_refused_total",
			Help: "Requests with a CDN-Peer mark that did not verify, served as any client's."}),
		epochMismatch: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_peer_epoch_mismatch_total",
			Help: "Peer requests routed by a membership other than this edge's."}),
		behind: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_peer_purges_behind_total",
			Help: "Peer requests refused (503) because the asking edge had applied purges this one had not yet."}),
		epoch: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdn_tier_epoch",
			Help: "The membership epoch this edge routes by (top 53 bits of its hash)."}),
		homes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdn_tier_region_homes",
			Help: "Healthy edges in this edge's region that keys are homed on."}),
	}
	if reg != nil {
		reg.MustRegister(m.asked, m.skipped, m.forged, m.epochMismatch, m.behind, m.epoch, m.homes)
	}
	return m
}
