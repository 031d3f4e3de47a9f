package geodns

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// exposition is the text exposition of reg's families named names.
func exposition(t testing.TB, reg prometheus.Gatherer, names ...string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, n := range names {
			if mf.GetName() == n {
				if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return b.String()
}

// countedSeries are the series a cached answer adds to.
var countedSeries = []string{"cdn_geodns_queries_total", "cdn_geodns_edge_answers_total", "cdn_geodns_answer_edges",
	"cdn_geodns_answer_cache_total", "cdn_geodns_client_subnet_queries_total", "cdn_geodns_fail_open_total"}

// TestTallyCountsAsEachQuery answers the same queries with a worker's
// tally, flushed after batches of 1 to 5, and without one (each query
// counted as it is answered), and wants the same metrics of both. Each
// query comes twice in a row, so that batches reuse answers.
func TestTallyCountsAsEachQuery(t *testing.T) {
	var regs [2]*prometheus.Registry
	var srvs [2]*Server
	for i := range srvs {
		cfg := testConfig(t)
		cfg.RateLimit.ResponsesPerSecond = 0
		regs[i] = prometheus.NewRegistry()
		s, err := New(cfg, Deps{Registry: regs[i]})
		if err != nil {
			t.Fatal(err)
		}
		srvs[i] = s
	}
	var pkts [][]byte
	for _, q := range []*dns.Msg{
		query("www.cdn.test.", dns.TypeA, ""),
		query("www.cdn.test.", dns.TypeAAAA, ""),
		query("www.cdn.test.", dns.TypeA, "198.51.100.0/24"),
		query("www.cdn.test.", dns.TypeA, "203.0.113.0/24"),
		query("www.cdn.test.", dns.TypeA, "192.0.2.0/24"),
		query("www.cdn.test.", dns.TypeA, "2001:db8:77::/48"),
		query("www.cdn.test.", dns.TypeA, "-"),
		query("cdn.test.", dns.TypeSOA, ""),
		query("nothing.cdn.test.", dns.TypeA, ""),
	} {
		pkts = append(pkts, packQuery(t, q, 7))
	}
	w := new(workerState)
	buf := make([]byte, 1233)
	for i, batch := 0, 1; i < 400; batch = batch%5 + 1 {
		for range batch {
			pkt, src := pkts[i/2*7%len(pkts)], netip.MustParseAddr("127.0.0.1")
			srvs[0].answerPacket(pkt, src, buf, w)
			srvs[1].answerPacket(pkt, src, buf, nil)
			i++
		}
		srvs[0].flush(w)
	}
	if cacheCount(regs[0], "hit") < 300 {
		t.Fatalf("%v cache hits of 400 queries: the tally was not tested", cacheCount(regs[0], "hit"))
	}
	got, want := exposition(t, regs[0], countedSeries...), exposition(t, regs[1], countedSeries...)
	if got != want {
		t.Errorf("counted by the tally:\n%s\ncounted each:\n%s", got, want)
	}
}

// TestUDPCountsBeforeSending asks a running server over UDP and wants
// each answer counted by the time its response arrives: the workers
// flush their tallies before they send.
func TestUDPCountsBeforeSending(t *testing.T) {
	cfg := testConfig(t)
	cfg.RateLimit.ResponsesPerSecond = 0
	reg := prometheus.NewRegistry()
	g := start(t, cfg, Deps{Registry: reg})
	for i := range 20 {
		ask(t, g.addr, "udp", query("www.cdn.test.", dns.TypeA, "198.51.100.0/24"))
		if got := counterValue(t, reg, "cdn_geodns_client_subnet_queries_total"); got != float64(i+1) {
			t.Fatalf("after %d answers, %v counted", i+1, got)
		}
	}
	if cacheCount(reg, "hit") != 19 {
		t.Errorf("%v cache hits, want 19", cacheCount(reg, "hit"))
	}
}

// TestEdgeHistogram wants of edgeHistogram what prometheus.Histogram
// gives for the same values.
func TestEdgeHistogram(t *testing.T) {
	bounds := []int{0, 1, 2, 4, 8}
	buckets := []float64{0, 1, 2, 4, 8}
	ours, theirs := prometheus.NewRegistry(), prometheus.NewRegistry()
	h := newEdgeHistogram(prometheus.NewDesc("edges", "Edges.", nil, nil), bounds)
	ph := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "edges", Help: "Edges.", Buckets: buckets})
	ours.MustRegister(h)
	theirs.MustRegister(ph)
	for _, c := range []struct {
		v int
		n uint64
	}{{0, 3}, {1, 1}, {2, 5}, {3, 2}, {4, 1}, {7, 4}, {8, 1}, {9, 2}, {40, 1}} {
		h.add(c.v, c.n)
		for range c.n {
			ph.Observe(float64(c.v))
		}
	}
	if got, want := exposition(t, ours, "edges"), exposition(t, theirs, "edges"); got != want {
		t.Errorf("edgeHistogram:\n%s\nprometheus.Histogram:\n%s", got, want)
	}
}
