package geodns

import (
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	cdnmetrics "github.com/selfcdn/cdn/internal/metrics"
)

// metrics are geodns's Prometheus series.
type metrics struct {
	queries     *prometheus.CounterVec // proto, qtype, rcode
	answers     *prometheus.CounterVec // region
	answerEdges *edgeHistogram
	failOpen    prometheus.Counter
	ecs         prometheus.Counter
	limited     *prometheus.CounterVec // action
	malformed   prometheus.Counter
	truncated   prometheus.Counter
	edges       *prometheus.GaugeVec // state
	connected   prometheus.Gauge
	updated     prometheus.Gauge
	latency     prometheus.Histogram
	cacheHit    prometheus.Counter // cdn_geodns_answer_cache_total{result="hit"}
	cacheMiss   prometheus.Counter // ... "miss"

	// children and regions cache the counters per label set:
	// WithLabelValues hashes its labels on every call, and this is the
	// hot path.
	children sync.Map // queryLabels -> prometheus.Counter
	regions  sync.Map // region -> prometheus.Counter
}

type queryLabels struct {
	tcp   bool
	qtype uint16
	rcode int
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdn_geodns_queries_total",
			Help: "DNS queries answered, by protocol, query type and response code."}, []string{"proto", "qtype", "rcode"}),
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdn_geodns_edge_answers_total",
			Help: "Answers with edges, by the region that answered (\"any\": client of unknown place; \"fail_open\": no healthy edge)."},
			[]string{"region"}),
		answerEdges: newEdgeHistogram(prometheus.NewDesc("cdn_geodns_answer_edges", "Edges in an edge answer.", nil, nil),
			[]int{0, 1, 2, 3, 4, 6, 8, 16, 32}),
		failOpen: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_geodns_fail_open_total",
			Help: "Edge answers given while no edge was healthy (every edge answered): alert on it."}),
		ecs: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_geodns_client_subnet_queries_total",
			Help: "Queries that carried an EDNS Client Subnet."}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdn_geodns_rate_limited_total",
			Help: "Responses over the rate limit, by what was done (drop, or slip: sent truncated)."}, []string{"action"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_geodns_malformed_total",
			Help: "Packets that did not parse as a DNS query (answered FORMERR when the header allowed)."}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{Name: "cdn_geodns_truncated_total",
			Help: "UDP responses truncated to the client's size (TC set)."}),
		edges: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cdn_geodns_edges",
			Help: "Edges known, by state (healthy, down, draining, unknown)."}, []string{"state"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdn_geodns_control_connected",
			Help: "1 while geodns follows control through NATS; answers keep the last state otherwise."}),
		updated: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdn_geodns_state_updated_timestamp_seconds",
			Help: "When the edge and site state last changed."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "cdn_geodns_response_seconds",
			Help: "Time to build a response, sampled 1 in 64.", Buckets: cdnmetrics.LatencyBuckets}),
	}
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "cdn_geodns_answer_cache_total",
		Help: "UDP queries of the common shape, by whether a packed answer was reused (hit) or built (miss)."}, []string{"result"})
	m.cacheHit, m.cacheMiss = cache.WithLabelValues("hit"), cache.WithLabelValues("miss")
	reg.MustRegister(cache, m.queries, m.answers, m.answerEdges, m.failOpen, m.ecs, m.limited, m.malformed, m.truncated,
		m.edges, m.connected, m.updated, m.latency)
	return m
}

// query counts one query.
func (m *metrics) query(tcp bool, qtype uint16, rcode int) {
	m.queryCounter(tcp, qtype, rcode).Inc()
}

// queryCounter is the queries counter of one label set.
func (m *metrics) queryCounter(tcp bool, qtype uint16, rcode int) prometheus.Counter {
	k := queryLabels{tcp, qtype, rcode}
	if c, ok := m.children.Load(k); ok {
		return c.(prometheus.Counter)
	}
	proto := "udp"
	if tcp {
		proto = "tcp"
	}
	c := m.queries.WithLabelValues(proto, qtypeLabel(qtype), rcodeLabel(rcode))
	m.children.Store(k, c)
	return c
}

// regionCounter is the edge answers counter of one region.
func (m *metrics) regionCounter(region string) prometheus.Counter {
	if c, ok := m.regions.Load(region); ok {
		return c.(prometheus.Counter)
	}
	c := m.answers.WithLabelValues(region)
	m.regions.Store(region, c)
	return c
}

// qtypeLabel bounds the qtype label: the types a CDN zone holds by name,
// every other as "other", so odd queries cannot grow the series.
func qtypeLabel(t uint16) string {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeNS, dns.TypeSOA, dns.TypeTXT, dns.TypeCAA, dns.TypeMX,
		dns.TypeSRV, dns.TypeANY, dns.TypeHTTPS, dns.TypeSVCB, dns.TypePTR, dns.TypeAXFR, dns.TypeIXFR:
		return dns.TypeToString[t]
	}
	return "other"
}

func rcodeLabel(r int) string {
	if s, ok := dns.RcodeToString[r]; ok {
		return s
	}
	return strconv.Itoa(r)
}

// edgeHistogram is a histogram of a small whole number (edges in an
// answer) that takes a count of answers at once: a UDP worker adds its
// batch's answers in one call (tally.go), where prometheus.Histogram
// observes one value at a time.
type edgeHistogram struct {
	desc   *prometheus.Desc
	bounds []int           // the buckets' upper bounds, ascending
	counts []atomic.Uint64 // per bucket, then one for above the last
	sum    atomic.Uint64
}

func newEdgeHistogram(desc *prometheus.Desc, bounds []int) *edgeHistogram {
	return &edgeHistogram{desc: desc, bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

// add counts n answers of v edges each.
func (h *edgeHistogram) add(v int, n uint64) {
	h.counts[sort.SearchInts(h.bounds, v)].Add(n)
	h.sum.Add(uint64(v) * n)
}

func (h *edgeHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

func (h *edgeHistogram) Collect(ch chan<- prometheus.Metric) {
	buckets := make(map[float64]uint64, len(h.bounds))
	var count uint64
	for i, b := range h.bounds {
		count += h.counts[i].Load()
		buckets[float64(b)] = count
	}
	count += h.counts[len(h.bounds)].Load()
	ch <- prometheus.MustNewConstHistogram(h.desc, count, float64(h.sum.Load()), buckets)
}
