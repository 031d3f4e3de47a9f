package origin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// checker runs one target's active health checks: a GET of the health
// path every interval; FailAfter failures in a row mark the target down,
// RecoverAfter successes up. A target starts up, so a new origin is not
// avoided before its first check. Groups sharing a target (with the same
// checks) share its checker.
type checker struct {
	url    string // the health path's absolute URL
	host   string // Host header; "" = the URL's
	label  string
	hc     HealthCheck
	client *http.Client
	gauge  prometheus.Gauge
	log    *slog.Logger

	down atomic.Bool

	cancel context.CancelFunc // stops run
	done   chan struct{}      // closed when run returns
}

// run checks until ctx ends.
func (c *checker) run(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.hc.Interval)
	defer t.Stop()
	var fails, oks int
	for {
		err := c.probe(ctx)
		if ctx.Err() != nil {
			return // stopped: the failure is ours, not the origin's
		}
		if err != nil {
			fails, oks = fails+1, 0
			if fails == c.hc.FailAfter && !c.down.Swap(true) {
				c.gauge.Set(0)
				c.log.LogAttrs(ctx, slog.LevelWarn, "origin health check failing; marked down",
					slog.String("origin", c.label), slog.Int("checks", fails), slog.Any("err", err))
			}
		} else {
			fails, oks = 0, oks+1
			if oks == c.hc.RecoverAfter && c.down.Swap(false) {
				c.gauge.Set(1)
				c.log.LogAttrs(ctx, slog.LevelInfo, "origin health check passing; marked up",
					slog.String("origin", c.label), slog.Int("checks", oks))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probe makes one check: any 2xx or 3xx answer within the timeout passes.
func (c *checker) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.hc.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return err
	}
	req.Host = c.host
	req.Header.Set("User-Agent", "cdn-health-check")
	res, err := c.client.Do(req)
	if err != nil {
		return err
	}
	// Drain a little so the connection can be reused; a huge body is cut.
	io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 399 {
		return &statusError{code: res.StatusCode}
	}
	return nil
}

// stop ends the checks and waits for run to return.
func (c *checker) stop() {
	c.cancel()
	<-c.done
}

type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("health check answered %d", e.code) }
