package geodns

import (
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/selfcdn/cdn/geodns/nearest"
)

// result is what a query came to, for metrics, the query log and the rate
// limiter.
type result struct {
	qtype    uint16
	rcode    int
	zone     string // the apex of the zone answered from, "" if none
	name     string // the lower-case name asked
	geo      bool   // the answer holds edges
	region   string // the region that answered a geo answer
	edges    int    // edges in a geo answer
	failOpen bool
	ecs      netip.Prefix // the client subnet given, if any
	opt      *dns.OPT     // the query's OPT record, nil without EDNS (or with two)
	// scope is the ECS scope echoed: the answer holds for that prefix of
	// the client subnet.
	scope int
	// limitName is the name the rate limiter counts the response under
	// when it is not the name asked: the wildcard a host matched.
	limitName string
	// drawn says the edges were drawn at random among several: the
	// response may be reused for the next query only by drawing them
	// again (redraw; answercache.go).
	drawn bool
	// redraw, for a drawn answer, is what drawing again takes; nil when
	// the answer cannot be redrawn in place (an edge with more than one
	// address of the family, or more than one draw in the response).
	redraw *redraw
}

// redraw is a drawn answer's pool, for a reuse to draw from again with
// the same odds and write the edges it draws over the packed records.
type redraw struct {
	pool  []int          // the table's pool (nearest.Answer.Pool)
	fam   nearest.Family // the answer's family
	n     int            // how many to draw
	addrs [][]net.IP     // the table's addresses of fam, by edge: one each in pool
	drawn []int          // the edges this response holds, in order
}

// newRedraw describes pick's draw, or is nil when the packed answer could
// not be redrawn by rewriting its records' addresses: an eligible edge
// with other than one address of the family gives the answer a length
// that depends on the draw.
func newRedraw(t *table, pick nearest.Answer, fam nearest.Family, n int, addrs [][]net.IP) *redraw {
	for _, i := range pick.Pool {
		if t.edges.Eligible(i, fam) && len(addrs[i]) != 1 {
			return nil
		}
	}
	return &redraw{pool: pick.Pool, fam: fam, n: n, addrs: addrs, drawn: slices.Clone(pick.Edges)}
}

// maxChain bounds CNAME chains followed inside our zones.
const maxChain = 8

// rfc8482HINFO answers ANY queries (RFC 8482 section 4.2).
var rfc8482HINFO = dns.HINFO{Cpu: "RFC8482"}

// respond builds the response to req from a client at src, untruncated,
// from table t.
func (s *Server) respond(req *dns.Msg, src netip.Addr, t *table) (*dns.Msg, result) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.Compress = true
	res := result{}
	if len(req.Question) > 0 {
		res.qtype = req.Question[0].Qtype
	}
	opt, twoOPT := findOPT(req)
	res.opt = opt
	fail := func(rcode int) (*dns.Msg, result) {
		m.Authoritative = false
		m.Rcode, res.rcode = rcode, rcode
		m.Answer, m.Ns, m.Extra = nil, nil, nil
		s.finishEDNS(m, opt, nil, 0)
		return m, res
	}
	if req.Opcode != dns.OpcodeQuery {
		return fail(dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 || req.Response {
		return fail(dns.RcodeFormatError)
	}

	// EDNS: one OPT, version 0, at most one client subnet, well formed.
	if twoOPT {
		return fail(dns.RcodeFormatError)
	}
	var ecs *dns.EDNS0_SUBNET
	client := src
	if opt != nil {
		if opt.Version() != 0 {
			return fail(dns.RcodeBadVers)
		}
		var ok bool
		if ecs, client, ok = clientSubnet(opt, src); !ok {
			return fail(dns.RcodeFormatError)
		}
		if ecs != nil && ecs.SourceNetmask > 0 {
			res.ecs = netip.PrefixFrom(client, int(ecs.SourceNetmask))
		}
	}

	q := req.Question[0]
	if q.Qclass != dns.ClassINET {
		return fail(dns.RcodeRefused)
	}
	name := lowerName(q.Name)
	res.name = name
	z := s.zones.find(name)
	if z == nil {
		return fail(dns.RcodeRefused) // not ours: we are no resolver
	}
	res.zone = z.origin
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		return fail(dns.RcodeRefused) // zone transfers are not offered
	}

	scope := 0
	owner := q.Name
	for hop := 0; ; hop++ {
		n := z.nodes[name]
		if cname := n.get(dns.TypeCNAME); len(cname) > 0 && q.Qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, cname...)
			target := strings.ToLower(cname[0].(*dns.CNAME).Target)
			next := s.zones.find(target)
			// Not ours (the resolver follows it), ANY (the CNAME is the
			// answer, RFC 1034 4.3.2), a loop, or too long a chain: stop.
			if next == nil || q.Qtype == dns.TypeANY || hop == maxChain || inAnswer(m.Answer, target) {
				break
			}
			z, name, owner = next, target, target
			continue
		}
		// A wildcard host never shadows a name the zone has (RFC 4592).
		match := t.hosts.match(name, n != nil)
		if n == nil && match == hostNone {
			if t.hosts.ent[name] {
				m.Ns = append(m.Ns, z.negSOA) // an empty non-terminal above site hosts: NODATA
				break
			}
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, z.negSOA)
			break
		}
		if match == hostWildcard {
			res.limitName = "*" + name[strings.IndexByte(name, '.'):] // random labels count together
		}
		before := len(m.Answer)
		switch {
		case q.Qtype == dns.TypeANY:
			hinfo := rfc8482HINFO
			hinfo.Hdr = dns.RR_Header{Name: owner, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: 3789}
			m.Answer = append(m.Answer, &hinfo)
		case match != hostNone && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA):
			if !t.ready {
				return fail(dns.RcodeServerFailure) // edges not known yet: let the resolver ask another server
			}
			m.Answer, scope = s.edgeAnswer(m.Answer, t, owner, q.Qtype, client, &res)
		default:
			m.Answer = append(m.Answer, n.get(q.Qtype)...)
			if q.Qtype == dns.TypeNS {
				m.Extra = s.glue(m.Extra, m.Answer)
			}
		}
		if len(m.Answer) == before {
			m.Ns = append(m.Ns, z.negSOA) // NODATA, at the end of a chain too (RFC 2308 2.2)
		}
		break
	}
	res.rcode, res.scope = m.Rcode, scope
	if ecs == nil || ecs.SourceNetmask == 0 {
		res.scope = 0
	}
	s.finishEDNS(m, opt, ecs, scope)
	return m, res
}

// inAnswer says whether a CNAME in answer is owned by name (a loop).
func inAnswer(answer []dns.RR, name string) bool {
	for _, rr := range answer {
		if strings.EqualFold(rr.Header().Name, name) {
			return true
		}
	}
	return false
}

// get returns a node's records of one type; a nil node has none.
func (n *node) get(t uint16) []dns.RR {
	if n == nil {
		return nil
	}
	return n.rrs[t]
}

// edgeAnswer appends the edges for a client at addr to answer, and
// returns the prefix length the choice holds for (the ECS scope).
func (s *Server) edgeAnswer(answer []dns.RR, t *table, owner string, qtype uint16, addr netip.Addr, res *result) ([]dns.RR, int) {
	loc, bits := s.locator.Locate(addr)
	c := nearest.Client{Region: loc.Region}
	if p, ok := t.edges.Region(loc.Region); ok && loc.Region != "" {
		c.Point, c.Located = p, true
	} else if loc.HasPoint {
		c.Point, c.Located = nearest.Point{Lat: loc.Lat, Lon: loc.Lon}, true
	}
	fam, addrs := nearest.V4, t.v4
	if qtype == dns.TypeAAAA {
		fam, addrs = nearest.V6, t.v6
	}
	var buf [16]int
	pick := t.edges.Pick(c, fam, s.cfg.Answer.Records, buf[:0])
	if pick.Drawn {
		res.redraw = nil // a second draw in one response is not redrawn
		if !res.drawn {
			res.redraw = newRedraw(t, pick, fam, s.cfg.Answer.Records, addrs)
		}
	}
	res.geo, res.region, res.failOpen, res.edges, res.drawn = true, pick.Region, pick.FailOpen, len(pick.Edges), res.drawn || pick.Drawn
	if len(pick.Edges) == 0 {
		bits = 0 // NODATA for everyone (no edge of the family): one cache entry will do
	}
	hdr := dns.RR_Header{Name: owner, Rrtype: qtype, Class: dns.ClassINET, Ttl: s.answerTTL}
	for _, i := range pick.Edges {
		for _, ip := range addrs[i] {
			if qtype == dns.TypeA {
				answer = append(answer, &dns.A{Hdr: hdr, A: ip})
			} else {
				answer = append(answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
			}
		}
	}
	return answer, bits
}

// glue adds the addresses of in-zone name servers to an NS answer.
func (s *Server) glue(extra, answer []dns.RR) []dns.RR {
	for _, rr := range answer {
		ns, ok := rr.(*dns.NS)
		if !ok {
			continue
		}
		target := strings.ToLower(ns.Ns)
		if z := s.zones.find(target); z != nil {
			n := z.nodes[target]
			extra = append(extra, n.get(dns.TypeA)...)
			extra = append(extra, n.get(dns.TypeAAAA)...)
		}
	}
	return extra
}

// findOPT returns the query's OPT record; bad is set for more than one
// (RFC 6891 section 6.1.1: FORMERR).
func findOPT(req *dns.Msg) (opt *dns.OPT, bad bool) {
	for _, rr := range req.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil {
				return nil, true
			}
			opt = o
		}
	}
	return opt, false
}

// clientSubnet finds the EDNS Client Subnet option and the address to
// locate: the subnet's, or src when there is none (or it is /0, which a
// client sends to keep its address private). ok is false for an option
// RFC 7871 calls malformed: two of them, a non-zero scope in a query, or
// address bits set past the source prefix (the library rejects a bad
// family or a prefix longer than the address before we see it).
func clientSubnet(opt *dns.OPT, src netip.Addr) (ecs *dns.EDNS0_SUBNET, client netip.Addr, ok bool) {
	client = src
	for _, o := range opt.Option {
		e, isECS := o.(*dns.EDNS0_SUBNET)
		if !isECS {
			continue
		}
		if ecs != nil || e.SourceScope != 0 {
			return nil, src, false
		}
		ecs = e
	}
	if ecs == nil || ecs.SourceNetmask == 0 {
		return ecs, client, true
	}
	ip := ecs.Address
	if ecs.Family == 1 {
		ip = ip.To4()
	}
	a, valid := netip.AddrFromSlice(ip)
	if !valid || (ecs.Family == 1) != a.Is4() {
		return nil, src, false
	}
	p := netip.PrefixFrom(a, int(ecs.SourceNetmask))
	if p.Masked().Addr() != a {
		return nil, src, false
	}
	return ecs, a, true
}

// finishEDNS adds the response's OPT when the query had one (q): our UDP
// size, the DO bit copied (RFC 3225), and the client subnet echoed with
// the scope the answer holds for (RFC 7871; 0: the same for everyone).
func (s *Server) finishEDNS(m *dns.Msg, q *dns.OPT, ecs *dns.EDNS0_SUBNET, scope int) {
	if q == nil {
		return
	}
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: uint16(s.cfg.MaxUDPSize)}}
	opt.SetDo(q.Do())
	if ecs != nil {
		if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
			scope = 0
		}
		if ecs.SourceNetmask == 0 {
			scope = 0 // the client gave no subnet: the answer must not claim to depend on one
		}
		echo := *ecs
		echo.SourceScope = uint8(min(scope, maxBits(ecs.Family)))
		opt.Option = []dns.EDNS0{&echo}
	}
	m.Extra = append(m.Extra, opt)
}

func maxBits(family uint16) int {
	if family == 1 {
		return 32
	}
	return 128
}

// lowerName lower-cases a name without allocating when it already is.
func lowerName(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// addrOf is the client address of a UDP or TCP peer.
func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}
