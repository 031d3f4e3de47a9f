package origin

import "github.com/prometheus/client_golang/prometheus"

// Request results, the "result" label of cdn_origin_requests_total.
const (
	result2xx = iota
	result3xx
	result4xx
	result5xx
	resultError
	resultTimeout
	numResults
)

var resultNames = [numResults]string{"2xx", "3xx", "4xx", "5xx", "error", "timeout"}

// metrics are the pool's collectors. Label values are bounded: origin is
// a target's Name or URL host, site a GroupConfig.Site.
type metrics struct {
	requests  *prometheus.CounterVec // site, origin, result
	failovers *prometheus.CounterVec // site, from, to
	breaker   *prometheus.GaugeVec   // origin
	health    *prometheus.GaugeVec   // origin
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdn_origin_requests_total",
			Help: "Requests sent to origin group targets, retries included, by result (status class, error or timeout).",
		}, []string{"site", "origin", "result"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdn_origin_failovers_total",
			Help: "Requests sent on to the next origin of a group after one failed.",
		}, []string{"site", "from", "to"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cdn_origin_breaker_state",
			Help: "Circuit breaker of each origin: 0 closed, 1 half-open, 2 open.",
		}, []string{"origin"}),
		health: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cdn_origin_health",
			Help: "Active health of each checked origin: 1 up, 0 down.",
		}, []string{"origin"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.failovers, m.breaker, m.health)
	}
	return m
}

// resultOf is the result label of a request's outcome.
func resultOf(status int, err error) int {
	switch {
	case err != nil && isTimeout(err):
		return resultTimeout
	case err != nil:
		return resultError
	case status >= 200 && status < 600:
		return status/100 - 2
	}
	return resultError // 1xx as a final answer is broken
}
