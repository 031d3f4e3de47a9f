package edge

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/edge/contentcoding"
	cdnmetrics "github.com/selfcdn/cdn/internal/metrics"
)

// result is how a request was answered, the "cache" label of the metrics
// and access log.
type result uint8

const (
	resultHit         result = iota // served fresh from cache
	resultStale                     // served stale (while revalidating, or for an origin error)
	resultRevalidated               // stored entry confirmed by a 304
	resultMiss                      // fetched from the origin
	resultPass                      // not cacheable: passed to the origin
	resultError                     // answered with an error status
	resultPushed                    // served from a pushed release
	numResults
)

var resultNames = [numResults]string{"hit", "stale", "revalidated", "miss", "pass", "error", "pushed"}

func (r result) String() string { return resultNames[r] }

var statusClasses = [6]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

// metrics are the edge's request-path counters. Per-site children are
// resolved once per site, so a request pays for no label lookups.
type metrics struct {
	requests  *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	fetches   *prometheus.CounterVec
	fetchDur  prometheus.Histogram
	coalesced prometheus.Counter
	durations [numResults]prometheus.Observer // duration children, resolved once
	tierHits  [numTiers]prometheus.Counter
	// compressed counts bodies compressed, by coding (indexed by
	// contentcoding.Coding; Identity unused).
	compressed [3]prometheus.Counter
	// tlsHandshakes counts HTTPS handshakes by result: ok, failed, or
	// plain_http (an http:// request sent to the TLS port).
	tlsHandshakes *prometheus.CounterVec
	// h3Conns counts accepted HTTP/3 connections by whether quic-go sends
	// their packets with UDP GSO (gso="true"/"false").
	h3Conns *prometheus.CounterVec
	// sendFileBytes counts body bytes sent with sendfile (Config.SendFile).
	sendFileBytes prometheus.Counter
	// peerAnswers counts requests from other edges (verified marks), by
	// stage and how they were answered: a shield's hits are
	// {stage="shield",cache="hit"}. upstream counts fills by what
	// answered them: origin, or a peer for the home or shield stage.
	peerAnswers *prometheus.CounterVec
	upstream    *prometheus.CounterVec
}

// storeTier is the cache tier a stored object was found in.
type storeTier uint8

const (
	tierMemory storeTier = iota
	tierDisk
	numTiers
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdn_edge_requests_total", Help: "Requests answered, by site, cache result and status class.",
		}, []string{"site", "cache", "code"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdn_edge_response_bytes_total", Help: "Response body bytes sent to clients.",
		}, []string{"site", "cache"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "cdn_edge_request_duration_seconds", Help: "Time to answer a request, by cache result.",
			Buckets: cdnmetrics.LatencyBuckets,
		}, []string{"cache"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdn_edge_origin_fetches_total", Help: "Requests sent to origins, by outcome (status class or error).",
		}, []string{"site", "result"}),
		fetchDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "cdn_edge_origin_fetch_duration_seconds", Help: "Time to an origin's response header.",
			Buckets: cdnmetrics.LatencyBuckets,
		}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdn_edge_coalesced_requests_total", Help: "Requests that joined another request's origin fetch.",
		}),
	}
	for r := range numResults {
		m.durations[r] = m.duration.WithLabelValues(r.String())
	}
	tierHits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdn_edge_cache_tier_hits_total", Help: "Stored objects found, by the tier that held them (fresh or not).",
	}, []string{"tier"})
	m.tierHits[tierMemory] = tierHits.WithLabelValues("memory")
	m.tierHits[tierDisk] = tierHits.WithLabelValues("disk")
	compressed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdn_edge_compressed_total", Help: "Cached bodies compressed (once per body and coding), by coding.",
	}, []string{"coding"})
	m.compressed[contentcoding.Gzip] = compressed.WithLabelValues("gzip")
	m.compressed[contentcoding.Zstd] = compressed.WithLabelValues("zstd")
	m.tlsHandshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdn_edge_tls_handshakes_total", Help: "TLS handshakes on the HTTPS port (TCP), by result: ok, failed, plain_http.",
	}, []string{"result"})
	m.h3Conns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdn_edge_http3_connections_total",
		Help: "HTTP/3 connections accepted, by gso: whether their packets go out with UDP GSO (up to 14 per sendmsg); without it (old kernel, QUIC_GO_DISABLE_GSO, an interface that refused it) every packet is its own system call.",
	}, []string{"gso"})
	m.h3Conns.WithLabelValues("true")
	m.h3Conns.WithLabelValues("false")
	m.sendFileBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cdn_edge_sendfile_bytes_total", Help: "Body bytes of disk hits sent with sendfile (plain HTTP/1.1, sendfile: true).",
	})
	m.peerAnswers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdn_edge_peer_answers_total", Help: "Requests from other edges answered, by stage (home, shield) and cache result.",
	}, []string{"stage", "cache"})
	m.upstream = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cdn_edge_fills_total", Help: "Fills by site and what answered them: origin, home (this region's home edge) or shield.",
	}, []string{"site", "from"})
	if reg != nil {
		reg.MustRegister(m.requests, m.bytes, m.duration, m.fetches, m.fetchDur, m.coalesced, tierHits, compressed, m.tlsHandshakes,
			m.h3Conns, m.sendFileBytes, m.peerAnswers, m.upstream)
	}
	return m
}

// fetched counts a fill's upstream fetch (fill.Config.Fetched): its
// status class, or "error" for status 0, and the time to its header.
func (m *metrics) fetched(site string, status int, took time.Duration) {
	m.fetchDur.Observe(took.Seconds())
	result := "error"
	if status != 0 {
		result = statusClasses[statusClass(status)]
	}
	m.fetches.WithLabelValues(site, result).Inc()
}

// siteMetrics are one site's counters, resolved up front.
type siteMetrics struct {
	requests [numResults][len(statusClasses)]prometheus.Counter
	bytes    [numResults]prometheus.Counter
}

func (m *metrics) forSite(name string) *siteMetrics {
	sm := &siteMetrics{}
	for r := range numResults {
		for c, class := range statusClasses {
			sm.requests[r][c] = m.requests.WithLabelValues(name, r.String(), class)
		}
		sm.bytes[r] = m.bytes.WithLabelValues(name, r.String())
	}
	return sm
}

func statusClass(code int) int {
	if code < 100 || code > 599 {
		return 5
	}
	return code/100 - 1
}
