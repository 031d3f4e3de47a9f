package geodns

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary packets through what the server does with
// one: the accept check, the library's parse, respond and truncation. It
// never panics, and every response packs, answers the query's ID, fits
// the client's UDP size, and holds answers only for our zones or for
// success.
func FuzzServeDNS(f *testing.F) {
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	seed(query("www.cdn.test.", dns.TypeA, ""))
	seed(query("WWW.cdn.test.", dns.TypeAAAA, "192.0.2.0/24"))
	seed(query("alias.cdn.test.", dns.TypeA, "2001:db8::/48"))
	seed(query("big.cdn.test.", dns.TypeTXT, "-"))
	seed(query("nope.cdn.test.", dns.TypeA, "-"))
	seed(query("cdn.test.", dns.TypeANY, ""))
	seed(query("cdn.test.", dns.TypeNS, "-"))
	seed(query("example.org.", dns.TypeA, ""))
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 8, 0, 8, 0, 4, 0, 1, 33, 0}, false)

	s, err := New(testConfig(f), Deps{})
	if err != nil {
		f.Fatal(err)
	}
	src := netip.MustParseAddr("127.0.0.1")
	f.Fuzz(func(t *testing.T, pkt []byte, tcp bool) {
		var h dns.Header
		req := new(dns.Msg)
		if err := req.Unpack(pkt); err != nil {
			return // the library answers FORMERR from the header alone, or drops it
		}
		h = dns.Header{Id: req.Id, Qdcount: uint16(len(req.Question)), Ancount: uint16(len(req.Answer)),
			Nscount: uint16(len(req.Ns)), Arcount: uint16(len(req.Extra))}
		if req.Response {
			h.Bits |= 1 << 15
		}
		h.Bits |= uint16(req.Opcode&0xF) << 11
		if acceptQuery(h) != dns.MsgAccept {
			return
		}
		m, res := s.respond(req, src, s.table.Load())
		if m.Id != req.Id || !m.Response {
			t.Fatalf("response id %d qr %v to query %d", m.Id, m.Response, req.Id)
		}
		size := 65535
		if !tcp {
			size = dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				size = min(max(int(opt.UDPSize()), dns.MinMsgSize), s.cfg.MaxUDPSize)
			}
			m.Truncate(size)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatalf("response does not pack: %v\n%v", err, m)
		}
		if len(b) > size {
			t.Fatalf("response of %d bytes for a client that takes %d", len(b), size)
		}
		if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError && len(m.Answer) > 0 {
			t.Fatalf("rcode %s with answers", dns.RcodeToString[m.Rcode])
		}
		for _, rr := range m.Answer {
			name := strings.ToLower(rr.Header().Name)
			if !dns.IsSubDomain("cdn.test.", name) {
				t.Fatalf("answer for %s, outside our zone (asked %s)", name, res.name)
			}
		}
	})
}
