package geodns

import (
	"net"
	"net/netip"
	"net/url"
	"strings"

	"github.com/miekg/dns"

	"github.com/selfcdn/cdn/geodns/nearest"
	"github.com/selfcdn/cdn/internal/state"
)

// table is what edge answers are drawn from: the hostnames answered with
// edges, and the edges ranked by place. It is rebuilt whole on every
// change and swapped in atomically, so a query sees one consistent view.
type table struct {
	hosts hostSet
	edges *nearest.Set
	// v4 and v6 are each edge's addresses (by the edge's index in edges).
	v4, v6 [][]net.IP
	// ready says the edges are known (control answered at least once).
	ready bool
	// counts of edges by state, for the metrics.
	healthy, down, draining, unknown int
	// answers are the packed responses given from this table (nil: no
	// cache); set by Server.setTable.
	answers *answerCache
}

// hostSet matches hostnames: exact ones, and one-label wildcards by the
// name after the wildcard.
type hostSet struct {
	exact, wild map[string]bool // lower-case, fully qualified
	// ent holds the names above every host (empty non-terminals, when
	// the zone has no records there): they exist, so they are NODATA,
	// not NXDOMAIN, or QNAME-minimising resolvers stop at them.
	ent map[string]bool
}

// How a name matched a hostSet.
const (
	hostNone = iota
	hostExact
	hostWildcard
)

func newHostSet(hosts []string) hostSet {
	hs := hostSet{exact: map[string]bool{}, wild: map[string]bool{}, ent: map[string]bool{}}
	for _, h := range hosts {
		h = strings.ToLower(dns.Fqdn(h))
		rest, isWild := strings.CutPrefix(h, "*.")
		switch {
		case strings.Contains(rest, "*"):
			continue
		case isWild:
			hs.wild[rest] = true
			hs.ent[rest] = true
		default:
			hs.exact[h] = true
		}
		for p := rest; ; {
			i := strings.IndexByte(p, '.')
			if i < 0 || i == len(p)-1 {
				break
			}
			p = p[i+1:]
			hs.ent[p] = true
		}
	}
	return hs
}

// match says how name (lower-case, fully qualified) is a site host. A
// wildcard matches only names the zone does not have (exists false).
func (hs hostSet) match(name string, exists bool) int {
	if hs.exact[name] {
		return hostExact
	}
	if i := strings.IndexByte(name, '.'); i >= 0 && len(hs.wild) > 0 && !exists && hs.wild[name[i+1:]] {
		return hostWildcard
	}
	return hostNone
}

// edgeInfo is one edge with its health, whatever its source.
type edgeInfo struct {
	name, region string
	lat, lon     float64
	addrs        []netip.Addr
	capacity     float64
	load         float64
	health       string // state.Health*
	draining     bool
}

// newTable builds a table from hosts and edges.
func newTable(hosts []string, edges []edgeInfo, ready bool) *table {
	t := &table{hosts: newHostSet(hosts), ready: ready}
	var ne []nearest.Edge
	for _, e := range edges {
		var v4, v6 []net.IP
		for _, a := range e.addrs {
			if a = a.Unmap(); a.Is4() {
				v4 = append(v4, net.IP(a.AsSlice()))
			} else if a.Is6() {
				v6 = append(v6, net.IP(a.AsSlice()))
			}
		}
		healthy := e.health == state.HealthUp && !e.draining
		switch {
		case e.draining:
			t.draining++
		case e.health == state.HealthUp:
			t.healthy++
		case e.health == state.HealthDown:
			t.down++
		default:
			t.unknown++
		}
		capacity := e.capacity
		if capacity == 0 {
			capacity = 1
		}
		// A loaded edge keeps a tenth of its share at full load: it must
		// shed clients, not drop out of the region.
		weight := capacity * (1 - 0.9*min(max(e.load, 0), 1))
		ne = append(ne, nearest.Edge{Name: e.name, Region: e.region, Lat: e.lat, Lon: e.lon, Weight: weight,
			Healthy: healthy, V4: len(v4) > 0, V6: len(v6) > 0})
		t.v4, t.v6 = append(t.v4, v4), append(t.v6, v6)
	}
	t.edges = nearest.NewSet(ne)
	return t
}

// edgeFromState turns a registered edge and control's verdict into an
// edgeInfo. Its addresses are those it registered, else the host of its
// public URL when that is an IP address.
func edgeFromState(e state.Edge, st state.EdgeStatus, judged bool) edgeInfo {
	info := edgeInfo{name: e.Name, region: e.Region, lat: e.Lat, lon: e.Lon, capacity: e.Capacity, load: e.Load,
		health: state.HealthUnknown}
	if judged {
		info.health, info.draining = st.Health, st.Draining
	}
	for _, a := range e.Addrs {
		if ip, err := netip.ParseAddr(a); err == nil {
			info.addrs = append(info.addrs, ip)
		}
	}
	if len(info.addrs) == 0 {
		if u, err := url.Parse(e.HTTP); err == nil {
			if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !ip.IsUnspecified() {
				info.addrs = append(info.addrs, ip)
			}
		}
	}
	return info
}

// edgesFromConfig are a standalone geodns's edges: healthy unless draining.
func edgesFromConfig(cfgs []EdgeConfig) []edgeInfo {
	var out []edgeInfo
	for _, c := range cfgs {
		e := edgeInfo{name: c.Name, region: c.Region, lat: c.Lat, lon: c.Lon, capacity: c.Capacity,
			health: state.HealthUp, draining: c.Draining}
		for _, a := range c.Addrs {
			if ip, err := netip.ParseAddr(a); err == nil {
				e.addrs = append(e.addrs, ip)
			}
		}
		out = append(out, e)
	}
	return out
}
