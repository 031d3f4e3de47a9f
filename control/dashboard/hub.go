package dashboard

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/internal/state"
)

// Store is the shared state the live view follows.
type Store interface {
	WatchEdges(ctx context.Context, f func(map[string]state.Edge)) error
	WatchEdgeStatuses(ctx context.Context, f func(map[string]state.EdgeStatus)) error
	WatchPurgesApplied(ctx context.Context, f func(state.PurgeApplied)) error
	EdgeReleases(ctx context.Context) ([]state.EdgeReleases, error)
	PurgeLog(ctx context.Context) (state.PurgeLogInfo, error)
	Purge(ctx context.Context, version uint64) (state.Purge, error)
}

// hub is the live view of the network: the edge registry and verdicts
// (watched), purge progress (watched), releases and recent purges
// (polled each second), and the edges' figures (their stats subject). Once
// a second it builds a snapshot, which every open page gets.
type hub struct {
	log    *slog.Logger
	now    func() time.Time
	series *seriesSet

	mu       sync.Mutex // guards everything below
	edges    map[string]state.Edge
	statuses map[string]state.EdgeStatus
	applied  map[string]uint64
	releases map[string]state.EdgeReleases
	purges   []purgeView
	stats    map[string]received // the latest figures by edge
	linked   bool                // NATS is there and the watches run
	snap     []byte              // the latest snapshot, JSON
	subs     map[chan []byte]struct{}
	closed   bool // no more snapshots: control is stopping
}

// received is an edge's figures and when control got them.
type received struct {
	at time.Time
	s  state.EdgeStats
}

func newHub(log *slog.Logger, now func() time.Time) *hub {
	h := &hub{log: log, now: now, series: newSeriesSet(), edges: map[string]state.Edge{}, statuses: map[string]state.EdgeStatus{},
		applied: map[string]uint64{}, releases: map[string]state.EdgeReleases{}, stats: map[string]received{},
		subs: map[chan []byte]struct{}{}}
	h.snap = h.build()
	return h
}

// run follows store and nc until ctx ends.
func (h *hub) run(ctx context.Context, store Store, nc *nats.Conn) {
	var wg sync.WaitGroup
	retry := func(what string, f func(context.Context) error) {
		wg.Go(func() {
			for {
				err := f(ctx)
				if ctx.Err() != nil {
					return
				}
				h.log.Warn("dashboard: "+what+" failed; retrying", slog.Any("err", err))
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		})
	}
	retry("watching edges", func(ctx context.Context) error {
		return store.WatchEdges(ctx, func(m map[string]state.Edge) { h.set(func() { h.edges = maps.Clone(m) }) })
	})
	// A verdict or a purge applied shows at once, not at the next tick: an
	// operator who drains an edge sees it drained.
	kick := make(chan struct{}, 1)
	changed := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	retry("watching edge status", func(ctx context.Context) error {
		return store.WatchEdgeStatuses(ctx, func(m map[string]state.EdgeStatus) {
			h.set(func() { h.statuses = maps.Clone(m) })
			changed()
		})
	})
	retry("watching purge reports", func(ctx context.Context) error {
		return store.WatchPurgesApplied(ctx, func(a state.PurgeApplied) {
			h.set(func() { h.applied[a.Edge] = max(h.applied[a.Edge], a.Version) })
			changed()
		})
	})
	sub, err := nc.Subscribe(state.StatsSubjectPrefix+"*", h.onStats)
	if err != nil {
		h.log.Warn("dashboard: no live figures from edges", slog.Any("err", err))
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	h.poll(ctx, store, nc)
	for {
		h.publish()
		select {
		case <-ctx.Done():
			if sub != nil {
				sub.Unsubscribe()
			}
			wg.Wait()
			h.set(func() { h.linked = false })
			h.publish()
			return
		case <-kick:
			// Reports come one per edge for each purge: gather them
			// into one snapshot. Without the pause the hub rebuilt its
			// snapshot back to back under a stream of waited-for
			// purges, a core's twentieth (issue 25).
			select {
			case <-time.After(kickGather):
			case <-ctx.Done():
			}
		case <-t.C:
			h.poll(ctx, store, nc)
		}
	}
}

func (h *hub) set(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f()
}

// kickGather is how long a change waits for others before the snapshot
// that shows them: short enough to look immediate.
const kickGather = 50 * time.Millisecond

// recentPurges is how many of the newest purges the page shows.
const recentPurges = 10

// poll reads what has no watch: releases per edge and the recent purges.
func (h *hub) poll(ctx context.Context, store Store, nc *nats.Conn) {
	ctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	rels, err := store.EdgeReleases(ctx)
	if err != nil {
		h.set(func() { h.linked = false })
		return
	}
	byEdge := map[string]state.EdgeReleases{}
	for _, r := range rels {
		byEdge[r.Edge] = r
	}
	info, err := store.PurgeLog(ctx)
	if err != nil {
		h.set(func() { h.linked = false })
		return
	}
	h.mu.Lock()
	known := map[uint64]purgeView{}
	for _, p := range h.purges {
		known[p.Version] = p
	}
	h.mu.Unlock()
	var purges []purgeView
	for v := info.Last; v >= info.First && v > 0 && len(purges) < recentPurges; v-- {
		if p, ok := known[v]; ok {
			purges = append(purges, p)
			continue
		}
		p, err := store.Purge(ctx, v)
		if err != nil {
			break
		}
		purges = append(purges, purgeView{Version: p.Version, Site: p.Site, Time: p.Time, Request: json.RawMessage(p.Data)})
	}
	h.set(func() {
		h.releases, h.purges = byEdge, purges
		h.linked = nc.Status() == nats.CONNECTED
	})
}

// onStats takes an edge's figures.
func (h *hub) onStats(m *nats.Msg) {
	var s state.EdgeStats
	if err := json.Unmarshal(m.Data, &s); err != nil {
		return
	}
	// The subject, not the body, says which edge: an edge may publish
	// only on its own.
	s.Edge = strings.TrimPrefix(m.Subject, state.StatsSubjectPrefix)
	now := h.now()
	sec := now.Unix()
	h.mu.Lock()
	if e, ok := h.edges[s.Edge]; ok {
		s.Region = e.Region
	}
	h.stats[s.Edge] = received{at: now, s: s}
	h.mu.Unlock()
	var all state.SiteFigure
	for site, f := range s.Sites {
		h.series.add("site:"+site, sec, f)
		all.Add(f)
	}
	h.series.add("region:"+s.Region, sec, all)
	h.series.add("all", sec, all)
}

// publish builds the snapshot and hands it to every page.
func (h *hub) publish() {
	snap := h.build()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.snap = snap
	for c := range h.subs {
		select {
		case c <- snap:
		default: // a slow page skips a second
		}
	}
}

// subscribe returns a channel of snapshots, the current one first,
// closed when control stops.
func (h *hub) subscribe() (chan []byte, func()) {
	c := make(chan []byte, 2)
	h.mu.Lock()
	defer h.mu.Unlock()
	c <- h.snap
	if h.closed {
		close(c)
		return c, func() {}
	}
	h.subs[c] = struct{}{}
	return c, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.subs, c)
	}
}

// close ends every page's stream, so an HTTP shutdown does not wait for
// them (the browsers reconnect to the next control).
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for c := range h.subs {
		close(c)
		delete(h.subs, c)
	}
}

// Snapshot is the network as a page shows it, once a second.
type Snapshot struct {
	Time time.Time `json:"time"`
	// Linked says control reaches NATS: without it the rest is stale.
	Linked  bool         `json:"linked"`
	Edges   []edgeView   `json:"edges"`
	Regions []regionView `json:"regions"`
	Purges  []purgeView  `json:"purges"`
}

// rates are per-second figures.
type rates struct {
	Requests  float64 `json:"rps"`
	HitRatio  float64 `json:"hit_ratio"` // hits over hits and misses; -1 without either
	Offload   float64 `json:"offload"`   // bytes served without the origin over all; -1 without bytes
	Bandwidth float64 `json:"bps"`       // body bytes per second
	Errors4xx float64 `json:"e4xx"`
	Errors5xx float64 `json:"e5xx"`
}

func ratesOf(f state.SiteFigure, seconds float64) rates {
	if seconds <= 0 {
		seconds = 1
	}
	r := rates{Requests: float64(f.Requests) / seconds, Bandwidth: float64(f.Bytes) / seconds,
		Errors4xx: float64(f.Status4xx) / seconds, Errors5xx: float64(f.Status5xx) / seconds, HitRatio: -1, Offload: -1}
	if n := f.Hits + f.Misses; n > 0 {
		r.HitRatio = float64(f.Hits) / float64(n)
	}
	if f.Bytes > 0 {
		r.Offload = float64(f.HitBytes) / float64(f.Bytes)
	}
	return r
}

type edgeView struct {
	Name     string    `json:"name"`
	Region   string    `json:"region"`
	HTTP     string    `json:"http"`
	Health   string    `json:"health"`
	Reason   string    `json:"reason,omitempty"`
	Draining bool      `json:"draining"`
	Load     float64   `json:"load"`
	Seen     time.Time `json:"seen"`
	Version  string    `json:"version,omitempty"`
	// Live says figures arrived within the last few seconds.
	Live bool `json:"live"`
	rates
	// PurgeApplied is the last purge version the edge applied.
	PurgeApplied uint64                       `json:"purge_applied"`
	Releases     map[string]state.SiteRelease `json:"releases,omitempty"`
}

type regionView struct {
	Name  string `json:"name"`
	Edges int    `json:"edges"`
	Up    int    `json:"up"`
	rates
}

type purgeView struct {
	Version uint64          `json:"version"`
	Site    string          `json:"site"`
	Time    time.Time       `json:"time"`
	Request json.RawMessage `json:"request"`
	// Applied lists the edges that applied it; Pending those that have
	// not yet (down and draining edges aside).
	Applied []string `json:"applied"`
	Pending []string `json:"pending"`
}

// liveFor is how long an edge's last figures stand for its current ones.
const liveFor = 3 * time.Second

func (h *hub) build() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	snap := Snapshot{Time: now.UTC(), Linked: h.linked, Edges: []edgeView{}, Regions: []regionView{}, Purges: []purgeView{}}
	regions := map[string]*regionView{}
	regionFig := map[string]state.SiteFigure{}
	for _, name := range slices.Sorted(maps.Keys(h.edges)) {
		e := h.edges[name]
		st, judged := h.statuses[name]
		v := edgeView{Name: name, Region: e.Region, HTTP: e.HTTP, Health: state.HealthUnknown, Load: e.Load, Seen: e.Seen,
			Version: e.Version, PurgeApplied: h.applied[name], rates: rates{HitRatio: -1, Offload: -1}}
		if judged {
			v.Health, v.Reason, v.Draining = st.Health, st.Reason, st.Draining
		}
		if r, ok := h.releases[name]; ok {
			v.Releases = r.Sites
		}
		r := regions[e.Region]
		if r == nil {
			r = &regionView{Name: e.Region}
			regions[e.Region] = r
		}
		r.Edges++
		if v.Health == state.HealthUp && !v.Draining {
			r.Up++
		}
		if got, ok := h.stats[name]; ok && now.Sub(got.at) < liveFor {
			var f state.SiteFigure
			for _, sf := range got.s.Sites {
				f.Add(sf)
			}
			v.Live, v.rates = true, ratesOf(f, got.s.Seconds)
			rf := regionFig[e.Region]
			rf.Add(f)
			regionFig[e.Region] = rf
		}
		snap.Edges = append(snap.Edges, v)
	}
	for _, name := range slices.Sorted(maps.Keys(regions)) {
		r := regions[name]
		r.rates = ratesOf(regionFig[name], 1)
		snap.Regions = append(snap.Regions, *r)
	}
	for _, p := range h.purges {
		p.Applied, p.Pending = []string{}, []string{}
		for _, e := range snap.Edges {
			switch {
			case e.PurgeApplied >= p.Version:
				p.Applied = append(p.Applied, e.Name)
			case e.Health != state.HealthDown && !e.Draining:
				p.Pending = append(p.Pending, e.Name)
			}
		}
		snap.Purges = append(snap.Purges, p)
	}
	b, _ := json.Marshal(snap)
	return b
}
