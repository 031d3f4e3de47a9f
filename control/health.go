package control

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/internal/state"
)

// checker decides each edge's health from three signals: its heartbeat
// (is the process alive and connected to NATS?), an active HTTP check of
// its health endpoint (can it serve?), and how far it has applied the
// purge log (would it serve what was purged? purgelag.go). A missing
// heartbeat or a purge lag marks an edge down at once; failed checks
// need FailAfter in a row, and a down edge needs RecoverAfter good checks
// to come back, so one slow answer does not flap DNS answers.
type checker struct {
	store  healthStore
	cfg    HealthConfig
	client *http.Client
	log    *slog.Logger
	now    func() time.Time
	edges  *prometheus.GaugeVec

	mu      sync.Mutex // protects streaks and seen, both pruned by forgetGone
	streaks map[string]*streak
	names   *namesakes
	// seen is the latest heartbeat read of each edge. A read of the
	// registry may be answered by any replica of its bucket, and one
	// that is catching up (its node back from a cut) answers with older
	// heartbeats: judged by those, every edge flapped down and up for
	// half a minute after a region's link returned.
	seen map[string]time.Time

	// applied is the purge version each edge reported applied (nil: purge
	// lag is not judged); lag samples the log, from round's goroutine.
	applied func(edge string) (uint64, bool)
	lag     purgeLag
	behind  prometheus.Gauge

	// watched, if set, is the registry and the verdicts as control's
	// watches of them last delivered them (ok false while a watch is
	// down): what a round judges by when the buckets cannot be read.
	watched func() (edges []state.Edge, statuses map[string]state.EdgeStatus, ok bool)
}

// healthStore is what of the state store the checker uses.
type healthStore interface {
	Edges(ctx context.Context) ([]state.Edge, error)
	EdgeStatus(ctx context.Context, name string) (state.EdgeStatus, error)
	SetEdgeStatus(ctx context.Context, st state.EdgeStatus) error
	PurgeLog(ctx context.Context) (state.PurgeLogInfo, error)
	WatchEdges(ctx context.Context, f func(map[string]state.Edge)) error
}

// streak counts an edge's consecutive check results. Kept in memory: a
// restarted (or second) control process rebuilds it within a few rounds.
type streak struct{ ok, fail int }

func newChecker(store healthStore, cfg HealthConfig, log *slog.Logger, now func() time.Time, reg prometheus.Registerer) *checker {
	c := &checker{store: store, cfg: cfg, log: log, now: now, streaks: map[string]*streak{}, seen: map[string]time.Time{},
		client: &http.Client{Timeout: cfg.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		edges:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "cdn_control_edges", Help: "Registered edges by health and drain state."}, []string{"health", "draining"}),
		behind: prometheus.NewGauge(prometheus.GaugeOpts{Name: "cdn_control_edges_behind_purges",
			Help: "Edges that had not applied a purge the log held health.purge_lag ago, at the last health round."}),
		lag: purgeLag{lag: cmp.Or(cfg.PurgeLag, 5*time.Second)},
	}
	if reg != nil {
		reg.MustRegister(c.edges, c.behind)
	}
	c.names = newNamesakes(10*cfg.HeartbeatTimeout, reg)
	return c
}

// run checks every edge each interval until ctx ends.
func (c *checker) run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if err := c.round(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("health round", slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round checks every registered edge once, in parallel.
func (c *checker) round(ctx context.Context) error {
	edges, statuses, err := c.registry(ctx)
	if err != nil {
		return err
	}
	behind := c.behindPurges(ctx, edges)
	c.behind.Set(float64(len(behind)))
	counts := map[[2]string]float64{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, e := range edges {
		wg.Go(func() {
			st, err := c.judge(ctx, e, behind[e.Name], statuses)
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("health check", slog.String("edge", e.Name), slog.Any("err", err))
				}
				return
			}
			mu.Lock()
			counts[[2]string{st.Health, fmt.Sprint(st.Draining)}]++
			mu.Unlock()
		})
	}
	wg.Wait()
	c.forgetGone(edges)
	c.edges.Reset()
	for k, n := range counts {
		c.edges.WithLabelValues(k[0], k[1]).Set(n)
	}
	return nil
}

// behindPurges names the edges behind on the purge log, each with the
// reason to give. It judges nobody until it has watched the log for the
// lag, nor when no edge at all is caught up: then it is control's view of
// the reports that is stale (its watch of them lost), not every edge.
func (c *checker) behindPurges(ctx context.Context, edges []state.Edge) map[string]string {
	if c.applied == nil || c.cfg.PurgeLag < 0 {
		return nil
	}
	info, err := c.store.PurgeLog(ctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("health: purge lag not judged", slog.Any("err", err))
		}
		return nil
	}
	now := c.now()
	c.lag.observe(now, info.Last)
	target, ok := c.lag.target(now)
	if !ok || target == 0 {
		return nil
	}
	behind := map[string]string{}
	caughtUp := false
	for _, e := range edges {
		v, reported := c.applied(e.Name)
		switch {
		case !reported:
			// An edge that reports nothing is judged by the rest.
		case v >= target:
			caughtUp = true
		default:
			behind[e.Name] = fmt.Sprintf("%s: applied %d, the log held %d %v ago", reasonBehind, v, target, c.lag.lag)
		}
	}
	if !caughtUp {
		return nil
	}
	return behind
}

// forgetGone drops the streaks and heartbeats kept for edges no longer
// registered, once their last heartbeat is ten heartbeat timeouts old: a
// listing may miss an edge whose key is being rewritten, and that one
// keeps what it had.
func (c *checker) forgetGone(registered []state.Edge) {
	names := make(map[string]bool, len(registered))
	for _, e := range registered {
		names[e.Name] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, seen := range c.seen {
		if !names[name] && c.now().Sub(seen) > 10*c.cfg.HeartbeatTimeout {
			delete(c.seen, name)
			delete(c.streaks, name)
		}
	}
}

// registry reads the registered edges. If the bucket cannot be read (a
// get answered by a replica cut off from the rest times out, and would
// for as long as the cut lasts, failing every round), it takes them and
// control's verdicts from the watches, which the stream's leader serves;
// statuses is nil when the edges were read from the bucket.
func (c *checker) registry(ctx context.Context) (edges []state.Edge, statuses map[string]state.EdgeStatus, err error) {
	edges, err = c.store.Edges(ctx)
	if err == nil || ctx.Err() != nil || c.watched == nil {
		return edges, nil, err
	}
	watchedEdges, statuses, ok := c.watched()
	if !ok {
		return nil, nil, err
	}
	c.log.Warn("health: edge registry not readable; judging by control's watch of it", slog.Any("err", err))
	return watchedEdges, statuses, nil
}

// judge checks one edge and records its health if it changed; behind,
// when not "", says it is behind on the purge log. Its last verdict is
// read from the bucket, or taken from statuses when that is not nil.
func (c *checker) judge(ctx context.Context, e state.Edge, behind string, statuses map[string]state.EdgeStatus) (state.EdgeStatus, error) {
	st, err := c.lastVerdict(ctx, e.Name, statuses)
	if err != nil {
		return st, err
	}
	ok, reason := c.probe(ctx, e)
	if ok && behind != "" {
		ok, reason = false, behind
	}
	c.mu.Lock()
	s := c.streaks[e.Name]
	if s == nil {
		s = &streak{}
		c.streaks[e.Name] = s
	}
	if ok {
		s.ok, s.fail = s.ok+1, 0
	} else {
		s.ok, s.fail = 0, s.fail+1
	}
	health := st.Health
	switch {
	case !ok && (reason == reasonNoHeartbeat || behind != "" || s.fail >= c.cfg.FailAfter):
		health = state.HealthDown
	case ok && health != state.HealthUp && s.ok >= c.cfg.RecoverAfter:
		health = state.HealthUp
	}
	c.mu.Unlock()
	if health == st.Health {
		return st, nil
	}
	if health == state.HealthUp {
		reason = ""
	}
	c.log.Info("edge health changed", slog.String("edge", e.Name), slog.String("from", st.Health), slog.String("to", health), slog.String("reason", reason))
	st.Health, st.Reason, st.Since = health, reason, c.now()
	return st, c.store.SetEdgeStatus(ctx, st)
}

const (
	reasonNoHeartbeat = "no heartbeat"
	reasonBehind      = "behind on purges"
)

// probe reports whether the edge looks able to serve, and why not.
func (c *checker) probe(ctx context.Context, e state.Edge) (bool, string) {
	c.mu.Lock()
	seen := e.Seen
	if last := c.seen[e.Name]; last.After(seen) {
		seen = last // a replica behind the one read before
	}
	c.seen[e.Name] = seen
	c.mu.Unlock()
	if age := c.now().Sub(seen); age > c.cfg.HeartbeatTimeout {
		return false, reasonNoHeartbeat
	}
	if e.Admin == "" {
		return true, "" // nothing to check beyond the heartbeat
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.Admin+"/readyz", nil)
	if err != nil {
		return false, "bad admin URL"
	}
	res, err := c.client.Do(req)
	if err != nil {
		return false, "health check failed: " + err.Error()
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("health check answered %d", res.StatusCode)
	}
	return true, ""
}

// lastVerdict is edge's status as control last recorded it: from
// statuses when given, else from the bucket.
func (c *checker) lastVerdict(ctx context.Context, edge string, statuses map[string]state.EdgeStatus) (state.EdgeStatus, error) {
	if statuses == nil {
		return c.store.EdgeStatus(ctx, edge)
	}
	st, ok := statuses[edge]
	if !ok {
		st = state.Unjudged(edge)
	}
	return st, nil
}
