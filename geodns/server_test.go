package geodns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/selfcdn/cdn/internal/config"
)

// testConfig is testdata/standalone.yaml with the test database's path
// made absolute (tests run in the package folder).
func testConfig(t testing.TB) Config {
	t.Helper()
	cfg := DefaultConfig()
	if err := config.DecodeFile("testdata/standalone.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs("testdata/test-city.mmdb")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Geo.MMDB = abs
	// A host with nothing of the zone above it but the apex.
	cfg.Hosts = append(cfg.Hosts, "edge.deep.geo.cdn.test")
	// A name whose TXT records fill more than 512 bytes, for truncation.
	for i := range 12 {
		cfg.Zones[0].Records = append(cfg.Zones[0].Records, `big TXT "`+strings.Repeat(string(rune('a'+i)), 80)+`"`)
	}
	return cfg
}

// running is a geodns serving on loopback for one test.
type running struct {
	*Server
	addr string // host:port, UDP and TCP
	// stop ends Serve and fails the test if it takes over 5 s to return;
	// the test's cleanup calls it too.
	stop func()
}

func start(t testing.TB, cfg Config, deps Deps) *running {
	t.Helper()
	srv, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("new geodns: %v", err)
	}
	pc, ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pc, ln, nil) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not return 5 s after its context ended")
		}
	}
	t.Cleanup(stop)
	return &running{Server: srv, addr: ln.Addr().String(), stop: stop}
}

// ask sends m over net ("udp" or "tcp") and returns the response.
func ask(t testing.TB, addr, network string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil && !(network == "udp" && r != nil && r.Truncated) {
		t.Fatalf("%s query %v: %v", network, m.Question, err)
	}
	return r
}

// query builds a query for name/qtype, with EDNS (and a client subnet)
// when subnet is not "" ("-" for EDNS without a subnet).
func query(name string, qtype uint16, subnet string) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	if subnet == "" {
		return m
	}
	m.SetEdns0(1232, false)
	if subnet != "-" {
		p := netip.MustParsePrefix(subnet)
		e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()}
		if p.Addr().Is6() {
			e.Family = 2
		}
		m.IsEdns0().Option = append(m.IsEdns0().Option, e)
	}
	return m
}

func answers(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.CNAME:
			out = append(out, "CNAME "+rr.Target)
		case *dns.TXT:
			out = append(out, "TXT "+strings.Join(rr.Txt, ""))
		case *dns.HINFO:
			out = append(out, "HINFO "+rr.Cpu)
		default:
			out = append(out, dns.TypeToString[rr.Header().Rrtype])
		}
	}
	return out
}

func ecsOf(r *dns.Msg) *dns.EDNS0_SUBNET {
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				return e
			}
		}
	}
	return nil
}

// Edge answers by client place, over UDP and TCP, with the ECS scope the
// answer holds for.
func TestEdgeAnswers(t *testing.T) {
	g := start(t, testConfig(t), Deps{})
	for _, tc := range []struct {
		name   string
		qname  string
		qtype  uint16
		subnet string
		want   []string
		scope  int // -1: no ECS option in the response
	}{
		{name: "resolver address (loopback, NA)", qname: "www.cdn.test.", qtype: dns.TypeA, want: []string{"127.0.1.1"}, scope: -1},
		{name: "EDNS without a subnet", qname: "www.cdn.test.", qtype: dns.TypeA, subnet: "-", want: []string{"127.0.1.1"}, scope: -1},
		{name: "ECS Europe", qname: "www.cdn.test.", qtype: dns.TypeA, subnet: "192.0.2.0/24", want: []string{"127.0.2.1"}, scope: 24},
		{name: "ECS Asia", qname: "www.cdn.test.", qtype: dns.TypeA, subnet: "198.51.100.0/24", want: []string{"127.0.3.1"}, scope: 24},
		{name: "ECS South America", qname: "www.cdn.test.", qtype: dns.TypeA, subnet: "203.0.113.0/24", want: []string{"127.0.4.1"}, scope: 24},
		{name: "ECS Oceania over IPv6", qname: "www.cdn.test.", qtype: dns.TypeA, subnet: "2001:db8:77::/48", want: []string{"127.0.5.1"}, scope: 32},
		{name: "ECS /32 narrower than the network", qname: "www.cdn.test.", qtype: dns.TypeA, subnet: "192.0.2.55/32", want: []string{"127.0.2.1"}, scope: 24},
		// The database has no record anywhere in 0.0.0.0/5: the answer holds for all of it.
		{name: "ECS unknown network falls back to any edge, scope of the miss", qname: "www.cdn.test.", qtype: dns.TypeA, subnet: "10.0.0.0/8", scope: 5},
		{name: "ECS /0 keeps the client private: resolver address", qname: "www.cdn.test.", qtype: dns.TypeA, subnet: "0.0.0.0/0", want: []string{"127.0.1.1"}, scope: 0},
		{name: "AAAA from Europe", qname: "www.cdn.test.", qtype: dns.TypeAAAA, subnet: "192.0.2.0/24", want: []string{"fd00::2:1"}, scope: 24},
		{name: "AAAA from Asia: nearest edge with IPv6 (Frankfurt)", qname: "www.cdn.test.", qtype: dns.TypeAAAA, subnet: "198.51.100.0/24", want: []string{"fd00::2:1"}, scope: 24},
		{name: "case-insensitive", qname: "WwW.CdN.TeSt.", qtype: dns.TypeA, subnet: "192.0.2.0/24", want: []string{"127.0.2.1"}, scope: 24},
		{name: "wildcard site host", qname: "shop.sites.cdn.test.", qtype: dns.TypeA, subnet: "203.0.113.0/24", want: []string{"127.0.4.1"}, scope: 24},
		{name: "CNAME to a site host", qname: "alias.cdn.test.", qtype: dns.TypeA, subnet: "192.0.2.0/24", want: []string{"CNAME www.cdn.test.", "127.0.2.1"}, scope: 24},
		{name: "static record: scope 0", qname: "static.cdn.test.", qtype: dns.TypeA, subnet: "192.0.2.0/24", want: []string{"192.0.2.10"}, scope: 0},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				r := ask(t, g.addr, network, query(tc.qname, tc.qtype, tc.subnet))
				if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
					t.Fatalf("rcode %s aa %v, want NOERROR aa", dns.RcodeToString[r.Rcode], r.Authoritative)
				}
				if r.Question[0].Name != tc.qname {
					t.Errorf("question echoed as %q, want %q (case kept)", r.Question[0].Name, tc.qname)
				}
				got := answers(r)
				if tc.want != nil && strings.Join(got, ",") != strings.Join(tc.want, ",") {
					t.Fatalf("answer %v, want %v", got, tc.want)
				}
				if tc.want == nil && len(got) != 1 {
					t.Fatalf("answer %v, want one edge", got)
				}
				for _, rr := range r.Answer {
					if edge := strings.HasPrefix(rr.String(), "127.0.") || strings.Contains(rr.String(), "fd00:"); edge && rr.Header().Ttl != 20 {
						t.Errorf("edge record TTL %d, want answer.ttl 20", rr.Header().Ttl)
					}
				}
				e := ecsOf(r)
				switch {
				case tc.scope < 0 && e != nil:
					t.Errorf("ECS option %v in the response to a query without one", e)
				case tc.scope >= 0 && tc.subnet != "-" && tc.subnet != "" && e == nil:
					t.Errorf("ECS option not echoed")
				case e != nil && int(e.SourceScope) != tc.scope:
					t.Errorf("ECS scope /%d, want /%d", e.SourceScope, tc.scope)
				case e != nil && tc.subnet != "":
					want := netip.MustParsePrefix(tc.subnet)
					if int(e.SourceNetmask) != want.Bits() {
						t.Errorf("ECS source echoed as /%d, want /%d", e.SourceNetmask, want.Bits())
					}
				}
			})
		}
	}
}

// The zone's own records: positive, negative (with the SOA), refusals.
func TestZoneAnswers(t *testing.T) {
	g := start(t, testConfig(t), Deps{})
	for _, tc := range []struct {
		name   string
		qname  string
		qtype  uint16
		qclass uint16
		rcode  int
		want   []string
		soa    bool // the SOA in authority (negative answer)
	}{
		{name: "SOA", qname: "cdn.test.", qtype: dns.TypeSOA, want: []string{"SOA"}},
		{name: "NS", qname: "cdn.test.", qtype: dns.TypeNS, want: []string{"NS", "NS"}},
		{name: "TXT", qname: "cdn.test.", qtype: dns.TypeTXT, want: []string{"TXT selfcdn test zone"}},
		{name: "CAA", qname: "cdn.test.", qtype: dns.TypeCAA, want: []string{"CAA"}},
		{name: "CNAME asked for", qname: "alias.cdn.test.", qtype: dns.TypeCNAME, want: []string{"CNAME www.cdn.test."}},
		{name: "CNAME out of our zones is not followed", qname: "outside.cdn.test.", qtype: dns.TypeA, want: []string{"CNAME www.example.org."}},
		{name: "NXDOMAIN", qname: "nope.cdn.test.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "NXDOMAIN under a name", qname: "x.static.cdn.test.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "wildcard covers one label only", qname: "a.b.sites.cdn.test.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "NODATA: type not at the name", qname: "static.cdn.test.", qtype: dns.TypeAAAA, soa: true},
		{name: "NODATA: site host, other type", qname: "www.cdn.test.", qtype: dns.TypeMX, soa: true},
		{name: "NODATA: empty non-terminal", qname: "b.deep.cdn.test.", qtype: dns.TypeA, soa: true},
		{name: "ANY gets the RFC 8482 answer", qname: "cdn.test.", qtype: dns.TypeANY, want: []string{"HINFO RFC8482"}},
		{name: "ANY at a CNAME gets the CNAME", qname: "alias.cdn.test.", qtype: dns.TypeANY, want: []string{"CNAME www.cdn.test."}},
		{name: "NODATA at the end of a CNAME chain has the SOA", qname: "alias.cdn.test.", qtype: dns.TypeMX, want: []string{"CNAME www.cdn.test."}, soa: true},
		{name: "a CNAME loop stops", qname: "loop1.cdn.test.", qtype: dns.TypeA, want: []string{"CNAME loop2.cdn.test.", "CNAME loop1.cdn.test."}},
		{name: "NODATA: empty non-terminal above a site host", qname: "deep.geo.cdn.test.", qtype: dns.TypeA, soa: true},
		{name: "NODATA: two levels above a site host", qname: "geo.cdn.test.", qtype: dns.TypeAAAA, soa: true},
		{name: "NXDOMAIN beside a site host", qname: "other.geo.cdn.test.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "a wildcard host does not shadow a name the zone has", qname: "static.sites.cdn.test.", qtype: dns.TypeA, want: []string{"192.0.2.12"}},
		{name: "another zone is refused", qname: "example.org.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "a zone's parent is refused", qname: "test.", qtype: dns.TypeSOA, rcode: dns.RcodeRefused},
		{name: "CHAOS is refused", qname: "version.bind.", qtype: dns.TypeTXT, qclass: dns.ClassCHAOS, rcode: dns.RcodeRefused},
		{name: "AXFR is refused", qname: "cdn.test.", qtype: dns.TypeAXFR, rcode: dns.RcodeRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := query(tc.qname, tc.qtype, "-")
			if tc.qclass != 0 {
				m.Question[0].Qclass = tc.qclass
			}
			network := "udp"
			if tc.qtype == dns.TypeAXFR {
				network = "tcp"
			}
			r := ask(t, g.addr, network, m)
			if r.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			if got := answers(r); strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("answer %v, want %v", got, tc.want)
			}
			hasSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA
			if hasSOA != tc.soa {
				t.Fatalf("authority %v, want the SOA: %v", r.Ns, tc.soa)
			}
			if hasSOA && r.Ns[0].Header().Ttl != 60 {
				t.Errorf("negative SOA TTL %d, want min(TTL, MINIMUM) = 60", r.Ns[0].Header().Ttl)
			}
			if tc.qtype == dns.TypeNS && len(r.Extra) < 2 {
				t.Errorf("NS answer without the in-zone glue: %v", r.Extra)
			}
		})
	}
}

// A response larger than the client's UDP size is truncated (TC), and the
// same query over TCP gets it whole.
func TestTruncation(t *testing.T) {
	g := start(t, testConfig(t), Deps{})
	for _, tc := range []struct {
		name    string
		edns    uint16 // 0: no EDNS (512 bytes)
		trunc   bool
		maxSize int
	}{
		{name: "no EDNS: 512 bytes", trunc: true, maxSize: 512},
		{name: "EDNS 1000", edns: 1000, trunc: true, maxSize: 1000},
		{name: "EDNS 4096 capped at max_udp_size 1232, which fits", edns: 4096, maxSize: 1232},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := query("big.cdn.test.", dns.TypeTXT, "")
			if tc.edns > 0 {
				m.SetEdns0(tc.edns, false)
			}
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: 65535}
			conn, err := c.Dial(g.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.WriteMsg(m)
			buf := make([]byte, 65535)
			conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if n > tc.maxSize {
				t.Fatalf("UDP response of %d bytes, client allows %d", n, tc.maxSize)
			}
			if r.Truncated != tc.trunc {
				t.Fatalf("TC = %v with %d answers in %d bytes, want %v", r.Truncated, len(r.Answer), n, tc.trunc)
			}
			full := ask(t, g.addr, "tcp", m)
			if full.Truncated || len(full.Answer) != 12 {
				t.Fatalf("over TCP: TC %v, %d answers, want all 12", full.Truncated, len(full.Answer))
			}
		})
	}
}

// Malformed and unsupported queries get a clear rcode, never an answer.
func TestBadQueries(t *testing.T) {
	g := start(t, testConfig(t), Deps{})
	withECS := func(family uint16, bits, scope uint8, addr []byte) []byte {
		m := query("www.cdn.test.", dns.TypeA, "-")
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		// Append an ECS option by hand to the OPT (the last record): the
		// library refuses to pack a malformed one.
		opt := []byte{0, 8, 0, byte(4 + len(addr)), byte(family >> 8), byte(family), bits, scope}
		opt = append(opt, addr...)
		b[len(b)-2], b[len(b)-1] = 0, byte(len(opt)) // OPT RDLENGTH (was 0)
		return append(b, opt...)
	}
	twoOPT := func() []byte {
		m := query("www.cdn.test.", dns.TypeA, "-")
		m.Extra = append(m.Extra, m.Extra[0])
		b, _ := m.Pack()
		return b
	}
	opcode := func(op int) []byte {
		m := query("www.cdn.test.", dns.TypeA, "")
		m.Opcode = op
		b, _ := m.Pack()
		return b
	}
	ednsVersion := func() []byte {
		m := query("www.cdn.test.", dns.TypeA, "-")
		m.IsEdns0().SetVersion(1)
		b, _ := m.Pack()
		return b
	}
	twoQuestions := func() []byte {
		m := query("www.cdn.test.", dns.TypeA, "")
		m.Question = append(m.Question, m.Question[0])
		b, _ := m.Pack()
		return b
	}
	for _, tc := range []struct {
		name  string
		pkt   []byte
		rcode int // -1: no response at all
	}{
		{name: "ECS family 3", pkt: withECS(3, 24, 0, []byte{192, 0, 2}), rcode: dns.RcodeFormatError},
		{name: "ECS IPv4 /33", pkt: withECS(1, 33, 0, []byte{192, 0, 2, 1, 0}), rcode: dns.RcodeFormatError},
		{name: "ECS IPv6 /129", pkt: withECS(2, 129, 0, make([]byte, 16)), rcode: dns.RcodeFormatError},
		{name: "ECS bits set past the prefix", pkt: withECS(1, 24, 0, []byte{192, 0, 2, 1}), rcode: dns.RcodeFormatError},
		{name: "ECS scope set in a query", pkt: withECS(1, 24, 16, []byte{192, 0, 2}), rcode: dns.RcodeFormatError},
		{name: "ECS well formed (control case)", pkt: withECS(1, 24, 0, []byte{192, 0, 2}), rcode: dns.RcodeSuccess},
		{name: "two OPT records", pkt: twoOPT(), rcode: dns.RcodeFormatError},
		{name: "EDNS version 1", pkt: ednsVersion(), rcode: dns.RcodeBadVers},
		{name: "two questions", pkt: twoQuestions(), rcode: dns.RcodeFormatError},
		{name: "opcode NOTIFY", pkt: opcode(dns.OpcodeNotify), rcode: dns.RcodeNotImplemented},
		{name: "opcode UPDATE", pkt: opcode(dns.OpcodeUpdate), rcode: dns.RcodeNotImplemented},
		{name: "truncated question", pkt: opcode(dns.OpcodeQuery)[:20], rcode: dns.RcodeFormatError},
		{name: "oversized query (cut at the read buffer)", pkt: func() []byte {
			m := query("www.cdn.test.", dns.TypeA, "-")
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_PADDING{Padding: make([]byte, 6000)})
			b, _ := m.Pack()
			return b
		}(), rcode: dns.RcodeFormatError},
		{name: "a response is never answered", pkt: func() []byte {
			m := query("www.cdn.test.", dns.TypeA, "")
			m.Response = true
			b, _ := m.Pack()
			return b
		}(), rcode: -1},
		{name: "header only", pkt: []byte{1, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, rcode: dns.RcodeFormatError},
		{name: "garbage shorter than a header", pkt: []byte{1, 2, 3}, rcode: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("udp", g.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(tc.pkt); err != nil {
				t.Fatal(err)
			}
			wait := 2 * time.Second
			if tc.rcode < 0 {
				wait = 300 * time.Millisecond
			}
			conn.SetReadDeadline(time.Now().Add(wait))
			buf := make([]byte, 65535)
			n, err := conn.Read(buf)
			if tc.rcode < 0 {
				r := new(dns.Msg)
				if err == nil && r.Unpack(buf[:n]) == nil && r.Rcode != dns.RcodeFormatError {
					t.Fatalf("answered %s, want silence or FORMERR", dns.RcodeToString[r.Rcode])
				}
				return
			}
			if err != nil {
				t.Fatalf("no response: %v", err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatalf("response does not parse: %v", err)
			}
			if r.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			if tc.rcode != dns.RcodeSuccess && len(r.Answer) > 0 {
				t.Fatalf("an error response with answers: %v", r.Answer)
			}
		})
	}
}

// Draining and down edges leave answers; with nothing healthy every edge
// answers (fail open), counted for alerting.
func TestDrainAndFailOpen(t *testing.T) {
	cfg := testConfig(t)
	for i := range cfg.Edges {
		cfg.Edges[i].Draining = cfg.Edges[i].Region == "eu"
	}
	g := start(t, cfg, Deps{})
	r := ask(t, g.addr, "udp", query("www.cdn.test.", dns.TypeA, "192.0.2.0/24"))
	if got := answers(r); len(got) != 1 || got[0] == "127.0.2.1" {
		t.Fatalf("Europe with its edge draining got %v, want another region's edge", got)
	}
	for i := range cfg.Edges {
		cfg.Edges[i].Draining = true
	}
	g = start(t, cfg, Deps{})
	r = ask(t, g.addr, "udp", query("www.cdn.test.", dns.TypeA, "192.0.2.0/24"))
	if got := answers(r); len(got) != 5 || got[0] != "127.0.2.1" {
		t.Fatalf("every edge draining: %v, want all five, Europe's first", got)
	}
	if v := counterValue(t, g.reg, "cdn_geodns_fail_open_total"); v != 1 {
		t.Fatalf("cdn_geodns_fail_open_total = %g, want 1", v)
	}
}

// A flood from one network is limited; other networks and TCP are not.
func TestRateLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.RateLimit = RateLimitConfig{ResponsesPerSecond: 5, Burst: 10, Slip: 2, IPv4Prefix: 24, IPv6Prefix: 56,
		Exempt: []string{"127.0.9.0/24"}}
	for i := range 30 { // 30 client networks the answer depends on
		cfg.Geo.Networks = append(cfg.Geo.Networks, NetworkConfig{CIDR: fmt.Sprintf("10.0.%d.0/24", i), Region: "eu"})
	}
	var mu sync.Mutex
	now := time.Unix(1e9, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	g := start(t, cfg, Deps{Now: clock})
	// from sends 30 queries for qname at once from src and sorts the
	// responses; with ecs, each carries its own client subnet.
	fromWith := func(src, qname string, ecs bool) (answered, slipped, silent int) {
		conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(g.addr)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for i := range 30 {
			m := query(qname, dns.TypeA, "")
			if ecs {
				m = query(qname, dns.TypeA, fmt.Sprintf("10.0.%d.0/24", i))
			}
			m.Id = uint16(i + 1)
			b, _ := m.Pack()
			conn.Write(b)
		}
		buf := make([]byte, 2048)
		for range 30 {
			// Responses come back at once; a second of silence means the
			// rest were dropped.
			conn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				break
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if r.Truncated && len(r.Answer) == 0 {
				slipped++
			} else {
				answered++
			}
		}
		return answered, slipped, 30 - answered - slipped
	}
	from := func(src string) (int, int, int) { return fromWith(src, "www.cdn.test.", false) }
	fromWithNames := func(src string) (answered, _, _ int) {
		for i := range 30 {
			a, _, _ := fromWithOne(t, g.addr, src, fmt.Sprintf("r%d.sites.cdn.test.", i))
			answered += a
		}
		return answered, 0, 0
	}
	a, s, d := from("127.0.0.1")
	if a != 10 || s != 10 || d != 10 {
		t.Fatalf("30 queries in an instant with burst 10, slip 2: %d answered, %d slipped, %d dropped; want 10/10/10", a, s, d)
	}
	if a, _, _ := from("127.0.8.1"); a != 10 {
		t.Fatalf("another /24 got %d answers, want its own burst of 10", a)
	}
	if a, _, _ := from("127.0.9.1"); a != 30 {
		t.Fatalf("an exempt network got %d of 30 answers", a)
	}
	if a, _, _ := fromWith("127.0.0.1", "www.cdn.test.", true); a != 30 {
		t.Fatalf("a resolver asking for 30 client subnets got %d of 30 answers; each subnet has its own bucket", a)
	}
	// A subnet buys nothing where the answer does not depend on it.
	if a, _, _ := fromWith("127.0.7.1", "static.cdn.test.", true); a != 10 {
		t.Fatalf("30 client subnets for a static record got %d answers, want the one bucket's 10", a)
	}
	// Random labels under a wildcard host count as one name.
	if a, _, _ := fromWithNames("127.0.6.1"); a != 10 {
		t.Fatalf("30 random labels under *.sites.cdn.test got %d answers, want one bucket's 10", a)
	}
	if r := ask(t, g.addr, "tcp", query("www.cdn.test.", dns.TypeA, "")); len(r.Answer) != 1 {
		t.Fatalf("TCP from the limited network: %v, want an answer (TCP is never limited)", r.Answer)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if a, _, _ := from("127.0.0.1"); a != 5 {
		t.Fatalf("one second later: %d answers, want the 5 tokens refilled", a)
	}
}

// fromWithOne sends one query from src and says whether it was answered.
func fromWithOne(t *testing.T, server, src, qname string) (answered, slipped, silent int) {
	t.Helper()
	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(server)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b, _ := query(qname, dns.TypeA, "").Pack()
	conn.Write(b)
	conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		return 0, 0, 1
	}
	r := new(dns.Msg)
	if r.Unpack(buf[:n]) == nil && r.Truncated && len(r.Answer) == 0 {
		return 0, 1, 0
	}
	return 1, 0, 0
}

// Serve stops every listener it was given, even when ctx ends before the
// servers have started.
func TestServeStopsAtOnce(t *testing.T) {
	for range 20 {
		srv, err := New(testConfig(t), Deps{})
		if err != nil {
			t.Fatal(err)
		}
		pc, ln, err := Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := srv.Serve(ctx, pc, ln, nil); err != nil {
			t.Fatalf("serve: %v", err)
		}
		c := &dns.Client{Net: "tcp", Timeout: 300 * time.Millisecond}
		if r, _, err := c.Exchange(query("www.cdn.test.", dns.TypeA, ""), ln.Addr().String()); err == nil {
			t.Fatalf("TCP answered after Serve returned: %v", r.Answer)
		}
	}
}

// Bad configuration is refused with what is wrong.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{name: "no SOA", edit: func(c *Config) { c.Zones[0].Records = c.Zones[0].Records[1:] }, want: "no SOA"},
		{name: "no NS", edit: func(c *Config) { c.Zones[0].Records = []string{"@ SOA ns1 h 1 2 3 4 5"} }, want: "no NS"},
		{name: "record outside the zone", edit: func(c *Config) { c.Zones[0].Records = append(c.Zones[0].Records, "www.example.org. A 192.0.2.1") }, want: "outside the zone"},
		{name: "CNAME beside data", edit: func(c *Config) { c.Zones[0].Records = append(c.Zones[0].Records, "alias TXT \"x\"") }, want: "CNAME must be the only"},
		{name: "delegation", edit: func(c *Config) { c.Zones[0].Records = append(c.Zones[0].Records, "sub NS ns.example.org.") }, want: "delegation"},
		{name: "zone-file syntax", edit: func(c *Config) { c.Zones[0].Records = append(c.Zones[0].Records, "x A not-an-ip") }, want: "parse"},
		{name: "host outside every zone", edit: func(c *Config) { c.Hosts = append(c.Hosts, "www.example.org") }, want: "none of the zones"},
		{name: "missing database", edit: func(c *Config) { c.Geo.MMDB = "/nonexistent.mmdb" }, want: "geoip database"},
		{name: "edge without address", edit: func(c *Config) { c.Edges[0].Addrs = nil }, want: "edges[0] (na-1).addrs"},
		{name: "bad network", edit: func(c *Config) { c.Geo.Networks = []NetworkConfig{{CIDR: "10.0.0.0/33", Region: "eu"}} }, want: "geo.networks[0].cidr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			tc.edit(&cfg)
			_, err := New(cfg, Deps{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// A zone file on disk serves like inline records.
func TestZoneFile(t *testing.T) {
	dir := t.TempDir()
	zf := filepath.Join(dir, "example.zone")
	os.WriteFile(zf, []byte("$TTL 300\n@ IN SOA ns1 hostmaster 1 7200 3600 1209600 120\n@ IN NS ns1\nns1 IN A 192.0.2.53\ncdn IN A 192.0.2.80\n"), 0o644)
	cfg := testConfig(t)
	cfg.Zones = append(cfg.Zones, ZoneConfig{Name: "example.net", File: zf})
	cfg.Hosts = append(cfg.Hosts, "edge.example.net")
	g := start(t, cfg, Deps{})
	if r := ask(t, g.addr, "udp", query("cdn.example.net.", dns.TypeA, "")); strings.Join(answers(r), ",") != "192.0.2.80" || r.Answer[0].Header().Ttl != 300 {
		t.Fatalf("zone file record: %v", r.Answer)
	}
	if r := ask(t, g.addr, "udp", query("edge.example.net.", dns.TypeA, "198.51.100.0/24")); strings.Join(answers(r), ",") != "127.0.3.1" {
		t.Fatalf("site host in the file's zone: %v", answers(r))
	}
	if r := ask(t, g.addr, "udp", query("nope.example.net.", dns.TypeA, "")); r.Rcode != dns.RcodeNameError || r.Ns[0].Header().Ttl != 120 {
		t.Fatalf("NXDOMAIN in the file's zone: %s %v", dns.RcodeToString[r.Rcode], r.Ns)
	}
}
