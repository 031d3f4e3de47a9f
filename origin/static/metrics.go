package static

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/internal/httpstats"
)

// metrics are the origin's Prometheus collectors.
type metrics struct {
	requests      *prometheus.CounterVec // by status class: "2xx" ... "5xx"
	responseBytes prometheus.Counter     // body bytes written
}

// newMetrics builds the collectors and registers them with reg; a nil reg
// leaves them unregistered (they still count, nobody reads them).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cdn_origin_requests_total",
			Help: "Requests served by the static origin, by status class.",
		}, []string{"code"}),
		responseBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cdn_origin_response_bytes_total",
			Help: "Response body bytes written by the static origin.",
		}),
	}
	// Start every class at zero so rate() works before the first error.
	for _, c := range []string{"2xx", "3xx", "4xx", "5xx"} {
		m.requests.WithLabelValues(c)
	}
	if reg == nil {
		return m, nil
	}
	if err := errors.Join(reg.Register(m.requests), reg.Register(m.responseBytes)); err != nil {
		return nil, err
	}
	return m, nil
}

// observe counts one finished response.
func (m *metrics) observe(status int, bytes int64) {
	m.requests.WithLabelValues(httpstats.Class(status)).Inc()
	m.responseBytes.Add(float64(bytes))
}
