package geodns

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/geodns/nearest"
	"github.com/selfcdn/cdn/internal/state"
)

// The GeoDNS explainer: the operator dashboard asks (state.ExplainSubject,
// request/reply over NATS) how geodns answers a client and why. It is
// answered here, by the process that holds the location database and the
// table answers come from, so the explanation is the answer's own logic
// rather than a copy of it in control.

// answerExplains answers explain requests on nc until ctx ends.
func (s *Server) answerExplains(ctx context.Context, nc *nats.Conn) error {
	sub, err := nc.Subscribe(state.ExplainSubject, func(m *nats.Msg) {
		var req state.ExplainRequest
		var ex state.Explanation
		if err := json.Unmarshal(m.Data, &req); err != nil {
			ex.Error = "bad request: " + err.Error()
		} else {
			ex = s.explain(req.Client)
		}
		b, _ := json.Marshal(ex)
		m.Respond(b)
	})
	if err != nil {
		return fmt.Errorf("answer explanations: %w", err)
	}
	<-ctx.Done()
	sub.Unsubscribe()
	return nil
}

// explain says how an A query for a site host from client (an address or
// a subnet, as ECS carries it) is answered: where the client is, the
// regions in the order tried, each edge with what the draw weighs, and
// one answer's edges.
func (s *Server) explain(client string) state.Explanation {
	ex := state.Explanation{Client: client, Chosen: []string{}, Regions: []state.ExplainRegion{}}
	addr, err := netip.ParseAddr(client)
	if err != nil {
		p, perr := netip.ParsePrefix(client)
		if perr != nil {
			ex.Error = "not an IP address or subnet: " + client
			return ex
		}
		addr = p.Masked().Addr()
	}
	addr = addr.Unmap()
	loc, bits := s.locator.Locate(addr)
	ex.Location = state.ExplainLocation{Region: loc.Region, Lat: loc.Lat, Lon: loc.Lon, HasPoint: loc.HasPoint,
		Country: loc.Country, Continent: loc.Continent, Bits: bits}
	t := s.table.Load()
	c := nearest.Client{Region: loc.Region}
	if p, ok := t.edges.Region(loc.Region); ok && loc.Region != "" {
		c.Point, c.Located = p, true
	} else if loc.HasPoint {
		c.Point, c.Located = nearest.Point{Lat: loc.Lat, Lon: loc.Lon}, true
	}
	fam := nearest.V4
	if addr.Is6() {
		fam = nearest.V6
	}
	pick := t.edges.Pick(c, fam, s.cfg.Answer.Records, nil)
	ex.Region, ex.FailOpen = pick.Region, pick.FailOpen
	for _, i := range pick.Edges {
		ex.Chosen = append(ex.Chosen, t.edges.Edge(i).Name)
	}

	infos := map[string]edgeInfo{}
	if s.cfg.Control == nil {
		for _, e := range edgesFromConfig(s.cfg.Edges) {
			infos[e.name] = e
		}
	} else {
		s.mu.Lock()
		st := s.ctlState
		for name, e := range st.edges {
			status, judged := st.statuses[name]
			infos[name] = edgeFromState(e, status, judged)
		}
		s.mu.Unlock()
	}
	byRegion := map[string]int{}
	for i := range len(t.v4) {
		e := t.edges.Edge(i)
		r, ok := byRegion[e.Region]
		if !ok {
			r = len(ex.Regions)
			byRegion[e.Region] = r
			er := state.ExplainRegion{Name: e.Region}
			if p, ok := t.edges.Region(e.Region); ok && c.Located {
				er.DistanceKM = nearest.Distance(c.Point, p)
			}
			ex.Regions = append(ex.Regions, er)
		}
		info := infos[e.Name]
		ex.Regions[r].Edges = append(ex.Regions[r].Edges, state.ExplainEdge{Name: e.Name, Health: info.health, Draining: info.draining,
			Eligible: e.Healthy, Weight: e.Weight, Load: info.load, Capacity: info.capacity})
	}
	// The order tried: the client's own region, then by distance.
	slices.SortStableFunc(ex.Regions, func(a, b state.ExplainRegion) int {
		switch {
		case a.Name == loc.Region && b.Name != loc.Region:
			return -1
		case b.Name == loc.Region && a.Name != loc.Region:
			return 1
		case a.DistanceKM < b.DistanceKM:
			return -1
		case a.DistanceKM > b.DistanceKM:
			return 1
		}
		return 0
	})
	return ex
}
