// Package deps is what every long-running part of the CDN (edge, control,
// geodns) takes from the process that runs it: a logger, a metrics
// registry, a clock, and what each means when left nil.
package deps

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	cdnmetrics "github.com/selfcdn/cdn/internal/metrics"
)

// Deps are what the caller owns and a part uses.
type Deps struct {
	// Logger receives lifecycle events (and an edge's access log, geodns's
	// query log). Nil discards.
	Logger *slog.Logger
	// Registry receives the part's metrics, served on its /metrics. Nil
	// uses a fresh registry.
	Registry *prometheus.Registry
	// Now is the clock. Nil uses time.Now.
	Now func() time.Time
	// AccessLog receives an edge's access log, JSON lines as the Logger
	// writes them (edge.Config.AccessLog turns it on). Nil uses stderr.
	AccessLog io.Writer
}

// WithDefaults returns d with every nil field given its default.
func (d Deps) WithDefaults() Deps {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.AccessLog == nil {
		d.AccessLog = os.Stderr
	}
	if d.Registry == nil {
		d.Registry = cdnmetrics.NewRegistry()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return d
}
