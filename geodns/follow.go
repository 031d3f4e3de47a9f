package geodns

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/internal/natsauth"
	"github.com/selfcdn/cdn/internal/natslink"
	"github.com/selfcdn/cdn/internal/state"
)

// controlState is what geodns has read from control: the sites (for their
// hostnames), the registered edges and control's verdict on each. It
// outlives a NATS outage: answers keep the last state.
type controlState struct {
	sites    []state.Site
	edges    map[string]state.Edge
	statuses map[string]state.EdgeStatus
	// have records which of the three have been read at least once.
	haveSites, haveEdges, haveStatuses bool
}

// followControl follows control's state through NATS until ctx ends,
// starting the watches again whenever they break or NATS reconnects.
func (s *Server) followControl(ctx context.Context) {
	c := s.cfg.Control
	if c.Creds != "" {
		if err := natsauth.CheckPrivate(c.Creds); err != nil {
			s.log.Warn("NATS credentials file is not private", "err", err)
		}
	}
	link := natslink.Config{URL: c.NATS, Creds: c.Creds, CA: c.CA, Inbox: natsauth.InboxPrefix(natsauth.RoleGeoDNS, "")}
	nc, reconnected, err := natslink.Connect(link, "cdn-geodns",
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			s.metrics.connected.Set(0)
			if ctx.Err() == nil {
				s.log.Warn("NATS connection lost; answering from the last state", "err", err)
			}
		}))
	if err != nil {
		s.log.Error("control link: bad NATS settings", "err", err)
		return
	}
	defer nc.Close()
	natslink.Follow(ctx, reconnected, natslink.Hooks{
		Down: func(err error) {
			s.log.Warn("control link down; answering from the last state, retrying", "err", err)
		},
	}, func(ctx context.Context, linked func()) error {
		err := s.watchControl(ctx, nc, linked)
		s.metrics.connected.Set(0)
		return err
	})
}

// watchControl runs the three watches on one connection until one fails
// or ctx ends (a fresh watch re-reads everything, so nothing missed while
// away is lost); linked is called once they start.
func (s *Server) watchControl(ctx context.Context, nc *nats.Conn, linked func()) error {
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	store, err := state.Bind(bctx, nc, state.GeoDNSAccess)
	cancel()
	if err != nil {
		return err
	}
	linked()
	s.metrics.connected.Set(1)
	s.log.Info("following control", "nats", nc.ConnectedUrlRedacted())
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	wg.Go(func() {
		errc <- store.WatchSites(wctx, func(sites []state.Site) {
			s.update(func(st *controlState) { st.sites, st.haveSites = sites, true })
		})
	})
	wg.Go(func() {
		errc <- store.WatchEdges(wctx, func(m map[string]state.Edge) {
			s.update(func(st *controlState) { st.edges, st.haveEdges = maps.Clone(m), true })
		})
	})
	wg.Go(func() {
		errc <- store.WatchEdgeStatuses(wctx, func(m map[string]state.EdgeStatus) {
			s.update(func(st *controlState) { st.statuses, st.haveStatuses = maps.Clone(m), true })
		})
	})
	wg.Go(func() { errc <- s.answerExplains(wctx, nc) }) // explain.go
	defer wg.Wait()
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = ctx.Err()
	}
	stop()
	return err
}

// update changes the control state and swaps in a table built from it.
func (s *Server) update(f func(*controlState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := &s.ctlState
	f(st)
	hosts := slices.Clone(s.cfg.Hosts)
	for _, site := range st.sites {
		for _, h := range site.Hosts {
			if s.zones.find(lowerName(strings.TrimSuffix(trimWildcard(h), ".")+".")) != nil {
				hosts = append(hosts, h)
			}
		}
	}
	var edges []edgeInfo
	for _, name := range slices.Sorted(maps.Keys(st.edges)) {
		status, judged := st.statuses[name]
		e := edgeFromState(st.edges[name], status, judged)
		if len(e.addrs) == 0 {
			s.log.LogAttrs(context.Background(), slog.LevelDebug, "edge has no address to answer with", slog.String("edge", name))
		}
		edges = append(edges, e)
	}
	ready := st.haveSites && st.haveEdges && st.haveStatuses
	wasReady := s.table.Load().ready
	s.setTable(newTable(hosts, edges, ready))
	if ready && !wasReady {
		s.log.Info("control state read; answering with edges", "edges", len(edges), "sites", len(st.sites))
	}
}
