package geodns

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"
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
	for _, b := range seedQueries(f) {
		f.Add(b, false)
		f.Add(b, true)
	}

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

// FuzzParseQuery checks the fast path's parser against the library's:
// whatever parseQuery takes, Unpack takes too and reads the same header
// flags, question, EDNS fields and client subnet; and the answer the
// cache gives for it, on a second asking with another ID, is the answer
// built without a cache.
func FuzzParseQuery(f *testing.F) {
	for _, b := range seedQueries(f) {
		f.Add(b)
	}

	cached, uncached, reg := cachePair(f, nil)
	src := netip.MustParseAddr("127.0.0.1")
	f.Fuzz(func(t *testing.T, pkt []byte) {
		q, ok := parseQuery(pkt)
		if !ok {
			return
		}
		req := new(dns.Msg)
		if err := req.Unpack(pkt); err != nil {
			t.Fatalf("fast path took a packet the library rejects: %v", err)
		}
		if len(req.Question) != 1 || len(req.Answer) != 0 || len(req.Ns) != 0 || len(req.Extra) != btoi(q.edns) {
			t.Fatalf("fast path took a packet of %d/%d/%d/%d records", len(req.Question), len(req.Answer), len(req.Ns), len(req.Extra))
		}
		if flags := binary.BigEndian.Uint16(pkt[2:]); flags != q.flags {
			t.Fatalf("flags %x, the packet's %x", q.flags, flags)
		}
		if req.Response || req.Opcode != dns.OpcodeQuery {
			t.Fatalf("fast path took a response or opcode %d", req.Opcode)
		}
		// The question, packed again by the library, is the bytes the key holds.
		qb := make([]byte, 512)
		n, err := dns.PackDomainName(req.Question[0].Name, qb, 0, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		qb = binary.BigEndian.AppendUint16(qb[:n], req.Question[0].Qtype)
		qb = binary.BigEndian.AppendUint16(qb, req.Question[0].Qclass)
		if !bytes.Equal(qb, q.question) {
			t.Fatalf("question %x, the library's %x (%s)", q.question, qb, req.Question[0].Name)
		}
		opt := req.IsEdns0()
		if (opt != nil) != q.edns {
			t.Fatalf("EDNS %v, the library's %v", q.edns, opt != nil)
		}
		if opt != nil {
			if opt.UDPSize() != q.udpSize || opt.Hdr.Ttl != q.optTTL {
				t.Fatalf("OPT size %d ttl %x, the library's %d %x", q.udpSize, q.optTTL, opt.UDPSize(), opt.Hdr.Ttl)
			}
			var subnets, cookies int
			for _, o := range opt.Option {
				switch c := o.(type) {
				case *dns.EDNS0_SUBNET:
					subnets++
				case *dns.EDNS0_COOKIE:
					if l := len(c.Cookie) / 2; l != 8 && (l < 16 || l > 40) {
						t.Fatalf("fast path took a cookie of %d bytes", l)
					}
					cookies++
				default:
					t.Fatalf("fast path took EDNS option %d", o.Option())
				}
			}
			if subnets != btoi(q.ecs) || cookies > 1 {
				t.Fatalf("%d subnets and %d cookies, fast path ECS %v", subnets, cookies, q.ecs)
			}
		}
		if q.ecs {
			e, client, ok := clientSubnet(opt, src)
			if !ok || e == nil {
				t.Fatalf("fast path took a subnet the server rejects: %v", opt)
			}
			if e.Family != q.family || e.SourceNetmask != q.source || client != q.client(src) {
				t.Fatalf("subnet %d/%d %v, the library's %d/%d %v", q.family, q.source, q.client(src), e.Family, e.SourceNetmask, client)
			}
		}
		// A fill, then a reuse under another ID: the same as built, but
		// for the addresses of an answer drawn at random among edges,
		// which each reuse draws again.
		buf := make([]byte, cached.cfg.MaxUDPSize+1)
		w := new(workerState) // the reuse finds the client in its memory
		cached.answerPacket(pkt, src, buf, w)
		cached.flush(w)
		again := slices.Clone(pkt)
		again[0] ^= 0xFF
		hits := cacheCount(reg, "hit")
		got := slices.Clone(cached.answerPacket(again, src, buf, w))
		cached.flush(w)
		if cacheCount(reg, "hit") == hits {
			return
		}
		want := uncached.answerPacket(again, src, make([]byte, len(buf)), nil)
		loc, bits := cached.locator.Locate(q.client(src))
		var kb [160]byte
		if e := cached.table.Load().answers.get(q.appendKey(kb[:0], loc, bits)); e != nil && e.draw != nil {
			r, w := new(dns.Msg), new(dns.Msg)
			if err := r.Unpack(got); err != nil {
				t.Fatalf("cached answer %x: %v", got, err)
			}
			if err := w.Unpack(want); err != nil {
				t.Fatalf("built answer %x: %v", want, err)
			}
			sameButAddrs(t, r, w)
		} else if !bytes.Equal(got, want) {
			t.Fatalf("cached answer %x, built %x", got, want)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// seedQueries are the fuzz targets' seeds: queries of every shape the
// server answers, packed, and one hand-made packet (ECS with a prefix
// longer than its address bytes).
func seedQueries(f *testing.F) [][]byte {
	withCookie := func(m *dns.Msg, cookie string) *dns.Msg {
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
		return m
	}
	var out [][]byte
	for _, m := range []*dns.Msg{
		query("www.cdn.test.", dns.TypeA, ""),
		query("WWW.cdn.test.", dns.TypeAAAA, "192.0.2.0/24"),
		query("alias.cdn.test.", dns.TypeA, "2001:db8::/48"),
		query("www.cdn.test.", dns.TypeA, "198.51.100.0/23"),
		query("www.cdn.test.", dns.TypeA, "0.0.0.0/0"),
		query("big.cdn.test.", dns.TypeTXT, "-"),
		query("nope.cdn.test.", dns.TypeA, "-"),
		query("cdn.test.", dns.TypeANY, ""),
		query("cdn.test.", dns.TypeNS, "-"),
		query("example.org.", dns.TypeA, ""),
		withCookie(query("www.cdn.test.", dns.TypeA, "192.0.2.0/24"), "0123456789abcdef"),
		withCookie(query("www.cdn.test.", dns.TypeA, "-"), "0123456789abcdef00112233445566778899aabbccddeeff"),
	} {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 8, 0, 8, 0, 4, 0, 1, 33, 0})
}
