package geodns

import (
	"bytes"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// cachePair is the same configuration twice: one server with the answer
// cache, one without, to tell a reused answer from a built one.
func cachePair(t testing.TB, edit func(*Config)) (cached, uncached *Server, reg *prometheus.Registry) {
	t.Helper()
	cfg := testConfig(t)
	cfg.RateLimit.ResponsesPerSecond = 0
	if edit != nil {
		edit(&cfg)
	}
	reg = prometheus.NewRegistry()
	cached, err := New(cfg, Deps{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Answer.CacheBytes = 0
	if uncached, err = New(cfg, Deps{}); err != nil {
		t.Fatal(err)
	}
	return cached, uncached, reg
}

func cacheCount(reg *prometheus.Registry, result string) float64 {
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "cdn_geodns_answer_cache_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func packQuery(t testing.TB, m *dns.Msg, id uint16) []byte {
	t.Helper()
	m.Id = id
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAnswerCacheSameAsBuilt asks each query of the table twice of a
// caching server, the second time with another ID and (where the query
// has a subnet) another subnet in the same place, and wants the bytes the
// server without a cache sends for that second query. hit says the second
// answer is a reuse.
func TestAnswerCacheSameAsBuilt(t *testing.T) {
	withECS := func(m *dns.Msg, subnet string) *dns.Msg {
		p := netip.MustParsePrefix(subnet)
		e := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: uint8(p.Bits()), Address: p.Addr().AsSlice()}
		if p.Addr().Is6() {
			e.Family = 2
		}
		if m.IsEdns0() == nil {
			m.SetEdns0(1232, false)
		}
		m.IsEdns0().Option = append(m.IsEdns0().Option, e)
		return m
	}
	withCookie := func(m *dns.Msg, cookie string) *dns.Msg {
		if m.IsEdns0() == nil {
			m.SetEdns0(1232, false)
		}
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: cookie})
		return m
	}
	q := func(name string, qtype uint16) *dns.Msg { return query(name, qtype, "") }
	edns := func(m *dns.Msg, size uint16, do bool) *dns.Msg { m.SetEdns0(size, do); return m }
	for _, tc := range []struct {
		name          string
		first, second *dns.Msg
		src           string // the sender; 127.0.0.1 if empty
		hit           bool
	}{
		{name: "plain A", first: q("www.cdn.test.", dns.TypeA), second: q("www.cdn.test.", dns.TypeA), hit: true},
		{name: "plain AAAA", first: q("www.cdn.test.", dns.TypeAAAA), second: q("www.cdn.test.", dns.TypeAAAA), hit: true},
		{name: "from another resolver in the same place", first: q("www.cdn.test.", dns.TypeA),
			second: q("www.cdn.test.", dns.TypeA), src: "127.0.0.2", hit: true},
		{name: "odd case", first: q("wWw.CDN.test.", dns.TypeA), second: q("wWw.CDN.test.", dns.TypeA), hit: true},
		{name: "another case is another entry", first: q("WWW.cdn.test.", dns.TypeA), second: q("www.CDN.TEST.", dns.TypeA)},
		{name: "EDNS", first: edns(q("www.cdn.test.", dns.TypeA), 1232, false),
			second: edns(q("www.cdn.test.", dns.TypeA), 1232, false), hit: true},
		{name: "EDNS DO", first: edns(q("www.cdn.test.", dns.TypeA), 4096, true),
			second: edns(q("www.cdn.test.", dns.TypeA), 4096, true), hit: true},
		{name: "DO differs", first: edns(q("www.cdn.test.", dns.TypeA), 4096, true),
			second: edns(q("www.cdn.test.", dns.TypeA), 4096, false)},
		{name: "EDNS version 1", first: edns(q("www.cdn.test.", dns.TypeA), 1232, false),
			second: func() *dns.Msg {
				m := edns(q("www.cdn.test.", dns.TypeA), 1232, false)
				m.IsEdns0().SetVersion(1)
				return m
			}()},
		{name: "ECS v4, same /24", first: query("www.cdn.test.", dns.TypeA, "198.51.100.0/25"),
			second: query("www.cdn.test.", dns.TypeA, "198.51.100.128/25"), hit: true},
		{name: "ECS v4, another continent", first: query("www.cdn.test.", dns.TypeA, "198.51.100.0/24"),
			second: query("www.cdn.test.", dns.TypeA, "192.0.2.0/24")},
		{name: "ECS v6", first: query("www.cdn.test.", dns.TypeA, "2001:db8::/56"),
			second: query("www.cdn.test.", dns.TypeA, "2001:db8:0:100::/56"), hit: true},
		{name: "ECS /0", first: query("www.cdn.test.", dns.TypeA, "0.0.0.0/0"),
			second: query("www.cdn.test.", dns.TypeA, "0.0.0.0/0"), hit: true},
		{name: "ECS /32", first: query("www.cdn.test.", dns.TypeA, "198.51.100.1/32"),
			second: query("www.cdn.test.", dns.TypeA, "198.51.100.2/32"), hit: true},
		{name: "ECS on a static name", first: query("static.cdn.test.", dns.TypeA, "198.51.100.0/24"),
			second: query("static.cdn.test.", dns.TypeA, "198.51.100.0/24"), hit: true},
		{name: "ECS with DO", first: withECS(edns(q("www.cdn.test.", dns.TypeA), 1232, true), "192.0.2.0/24"),
			second: withECS(edns(q("www.cdn.test.", dns.TypeA), 1232, true), "192.0.2.0/24"), hit: true},
		{name: "client cookie, then another", first: withCookie(edns(q("www.cdn.test.", dns.TypeA), 1232, false), "0123456789abcdef"),
			second: withCookie(edns(q("www.cdn.test.", dns.TypeA), 1232, false), "fedcba9876543210"), hit: true},
		{name: "cookie with a server cookie, after none", first: edns(q("www.cdn.test.", dns.TypeA), 1232, false),
			second: withCookie(edns(q("www.cdn.test.", dns.TypeA), 1232, false), "0123456789abcdef"+"00112233445566778899aabbccddeeff"), hit: true},
		{name: "cookie and ECS", first: withCookie(query("www.cdn.test.", dns.TypeA, "198.51.100.0/24"), "0123456789abcdef"),
			second: withECS(withCookie(edns(q("www.cdn.test.", dns.TypeA), 1232, false), "aaaaaaaaaaaaaaaa"), "198.51.100.0/24"), hit: true},
		{name: "cookie of a bad length", first: withCookie(edns(q("www.cdn.test.", dns.TypeA), 1232, false), "0123456789"),
			second: withCookie(edns(q("www.cdn.test.", dns.TypeA), 1232, false), "0123456789")},
		{name: "two cookies", first: withCookie(withCookie(edns(q("www.cdn.test.", dns.TypeA), 1232, false), "0123456789abcdef"), "0123456789abcdef"),
			second: withCookie(withCookie(edns(q("www.cdn.test.", dns.TypeA), 1232, false), "0123456789abcdef"), "0123456789abcdef")},
		{name: "CNAME to a site host", first: query("alias.cdn.test.", dns.TypeA, "203.0.113.0/24"),
			second: query("alias.cdn.test.", dns.TypeA, "203.0.113.0/24"), hit: true},
		{name: "wildcard host", first: q("shop.sites.cdn.test.", dns.TypeA), second: q("shop.sites.cdn.test.", dns.TypeA), hit: true},
		{name: "NXDOMAIN", first: q("nope.cdn.test.", dns.TypeA), second: q("nope.cdn.test.", dns.TypeA), hit: true},
		{name: "NODATA", first: q("static.cdn.test.", dns.TypeMX), second: q("static.cdn.test.", dns.TypeMX), hit: true},
		{name: "NS with glue", first: q("cdn.test.", dns.TypeNS), second: q("cdn.test.", dns.TypeNS), hit: true},
		{name: "ANY", first: q("cdn.test.", dns.TypeANY), second: q("cdn.test.", dns.TypeANY), hit: true},
		{name: "REFUSED, not ours", first: q("example.org.", dns.TypeA), second: q("example.org.", dns.TypeA), hit: true},
		{name: "REFUSED, class CH", first: func() *dns.Msg { m := q("www.cdn.test.", dns.TypeA); m.Question[0].Qclass = dns.ClassCHAOS; return m }(),
			second: func() *dns.Msg { m := q("www.cdn.test.", dns.TypeA); m.Question[0].Qclass = dns.ClassCHAOS; return m }(), hit: true},
		{name: "RD and CD are echoed", first: func() *dns.Msg { m := q("www.cdn.test.", dns.TypeA); m.RecursionDesired = true; return m }(),
			second: func() *dns.Msg { m := q("www.cdn.test.", dns.TypeA); m.CheckingDisabled = true; return m }()},
		{name: "truncated TXT", first: q("big.cdn.test.", dns.TypeTXT), second: q("big.cdn.test.", dns.TypeTXT)},
		{name: "TXT that fits EDNS", first: edns(q("big.cdn.test.", dns.TypeTXT), 1232, false),
			second: edns(q("big.cdn.test.", dns.TypeTXT), 1232, false), hit: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cached, uncached, reg := cachePair(t, nil)
			src := netip.MustParseAddr("127.0.0.1")
			buf := make([]byte, cached.cfg.MaxUDPSize+1)
			if got := cached.answerPacket(packQuery(t, tc.first, 1), src, buf, nil); got == nil {
				t.Fatal("no answer to the first query")
			}
			if tc.src != "" {
				src = netip.MustParseAddr(tc.src)
			}
			second := packQuery(t, tc.second, 0xBEEF)
			got := slices.Clone(cached.answerPacket(second, src, buf, nil))
			want := uncached.answerPacket(second, src, make([]byte, len(buf)), nil)
			if !bytes.Equal(got, want) {
				g, w := new(dns.Msg), new(dns.Msg)
				g.Unpack(got)
				w.Unpack(want)
				t.Fatalf("cached server answered\n%v\nwant\n%v", g, w)
			}
			if hits := cacheCount(reg, "hit"); (hits == 1) != tc.hit {
				t.Errorf("cache hits %v, want a hit: %v", hits, tc.hit)
			}
		})
	}
}

// TestAnswerCacheSeesChanges: the query after a table swap (health,
// drain, edges or hosts changed) is answered from the new table.
func TestAnswerCacheSeesChanges(t *testing.T) {
	s, _, reg := cachePair(t, nil)
	src := netip.MustParseAddr("127.0.0.1") // NA in the test database
	pkt := packQuery(t, query("www.cdn.test.", dns.TypeA, ""), 7)
	ask := func() []string {
		t.Helper()
		r := new(dns.Msg)
		if err := r.Unpack(s.answerPacket(pkt, src, make([]byte, 1233), nil)); err != nil {
			t.Fatal(err)
		}
		return answers(r)
	}
	for range 3 {
		if got := ask(); !slices.Equal(got, []string{"127.0.1.1"}) {
			t.Fatalf("answers %v, want the NA edge", got)
		}
	}
	if hits := cacheCount(reg, "hit"); hits != 2 {
		t.Fatalf("cache hits %v, want 2", hits)
	}
	edges := edgesFromConfig(s.cfg.Edges)
	edges[0].draining = true // na-1
	s.setTable(newTable(s.cfg.Hosts, edges, true))
	if got := ask(); slices.Contains(got, "127.0.1.1") || len(got) != 1 {
		t.Fatalf("answers %v after na-1 drained, want another edge", got)
	}
	edges[0].draining, edges[0].health = false, "down"
	s.setTable(newTable(s.cfg.Hosts, edges, true))
	if got := ask(); slices.Contains(got, "127.0.1.1") {
		t.Fatalf("answers %v after na-1 went down", got)
	}
	edges[0].health = "up"
	s.setTable(newTable(nil, edges, true)) // www is no longer a site host
	r := new(dns.Msg)
	if err := r.Unpack(s.answerPacket(pkt, src, make([]byte, 1233), nil)); err != nil || r.Rcode != dns.RcodeNameError {
		t.Fatalf("after the host went away: %v, %v; want NXDOMAIN", r, err)
	}
}

// TestAnswerCacheRedraws: an answer drawn among several edges is reused
// by drawing again with the same odds: every reuse is the built answer
// but for the drawn addresses, which are distinct, eligible, and come up
// as often as their weights say. An answer whose length depends on the
// draw (an edge with two addresses) is not reused.
func TestAnswerCacheRedraws(t *testing.T) {
	na := func(name string, capacity float64, addrs ...string) EdgeConfig {
		return EdgeConfig{Name: name, Region: "na", Lat: 40.7, Lon: -74, Addrs: addrs, Capacity: capacity}
	}
	for _, tc := range []struct {
		name    string
		records int
		edges   []EdgeConfig
		q       *dns.Msg
		// share is each address's expected share of first places.
		share map[string]float64
		reuse bool
	}{
		{"two edges, one record", 1, []EdgeConfig{na("na-2", 1, "127.0.1.2")}, query("www.cdn.test.", dns.TypeA, ""),
			map[string]float64{"127.0.1.1": 0.5, "127.0.1.2": 0.5}, true},
		{"weights 3:1", 1, []EdgeConfig{na("na-2", 3, "127.0.1.2")}, query("www.cdn.test.", dns.TypeA, ""),
			map[string]float64{"127.0.1.1": 0.25, "127.0.1.2": 0.75}, true},
		{"three edges, two records", 2, []EdgeConfig{na("na-2", 1, "127.0.1.2"), na("na-3", 1, "127.0.1.3")},
			query("www.cdn.test.", dns.TypeA, "-"),
			map[string]float64{"127.0.1.1": 1.0 / 3, "127.0.1.2": 1.0 / 3, "127.0.1.3": 1.0 / 3}, true},
		{"AAAA, ECS", 1, []EdgeConfig{na("na-2", 1, "127.0.1.2", "fd00::1:2")}, query("www.cdn.test.", dns.TypeAAAA, "127.0.0.0/24"),
			map[string]float64{"fd00::1:1": 0.5, "fd00::1:2": 0.5}, true},
		{"an edge with two addresses", 1, []EdgeConfig{na("na-2", 1, "127.0.1.2", "127.0.1.22")}, query("www.cdn.test.", dns.TypeA, ""),
			nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, uncached, reg := cachePair(t, func(c *Config) {
				c.Answer.Records = tc.records
				c.Edges = append(c.Edges, tc.edges...)
			})
			src := netip.MustParseAddr("127.0.0.1")
			pkt := packQuery(t, tc.q, 7)
			built := new(dns.Msg)
			if err := built.Unpack(uncached.answerPacket(pkt, src, make([]byte, 1233), nil)); err != nil {
				t.Fatal(err)
			}
			const n = 2000
			first := map[string]int{}
			for range n {
				r := new(dns.Msg)
				if err := r.Unpack(s.answerPacket(pkt, src, make([]byte, 1233), nil)); err != nil {
					t.Fatal(err)
				}
				if tc.reuse { // else the draw changes the length
					sameButAddrs(t, r, built)
				}
				got := answers(r)
				first[got[0]]++
				if len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
					t.Fatalf("an edge twice in one answer: %v", got)
				}
			}
			hits := cacheCount(reg, "hit")
			if !tc.reuse {
				if hits != 0 {
					t.Errorf("%v reuses, want none", hits)
				}
				return
			}
			if hits != n-1 {
				t.Errorf("%v reuses of %d answers, want %d", hits, n, n-1)
			}
			for addr, want := range tc.share {
				// Binomial: n=2000 puts 5 standard deviations within 0.06.
				if got := float64(first[addr]) / n; got < want-0.06 || got > want+0.06 {
					t.Errorf("%s first in %.3f of the answers, want %.3f (%v)", addr, got, want, first)
				}
			}
			if len(first) != len(tc.share) {
				t.Errorf("first places %v, want only %v", first, tc.share)
			}
		})
	}
	// A static name in the same server is still reused.
	s, _, reg := cachePair(t, nil)
	static := packQuery(t, query("static.cdn.test.", dns.TypeA, ""), 8)
	for range 2 {
		s.answerPacket(static, netip.MustParseAddr("127.0.0.1"), make([]byte, 1233), nil)
	}
	if hits := cacheCount(reg, "hit"); hits != 1 {
		t.Errorf("cache hits %v for a static name asked twice, want 1", hits)
	}
}

// sameButAddrs fails t unless r is want but for the addresses of its A
// and AAAA records.
func sameButAddrs(t *testing.T, r, want *dns.Msg) {
	t.Helper()
	strip := func(m *dns.Msg) string {
		c := m.Copy()
		for _, rr := range c.Answer {
			switch rr := rr.(type) {
			case *dns.A:
				rr.A = nil
			case *dns.AAAA:
				rr.AAAA = nil
			}
		}
		return c.String()
	}
	if a, b := strip(r), strip(want); a != b {
		t.Fatalf("reuse differs from the built answer beyond its addresses:\n%s\nwant\n%s", a, b)
	}
}

// TestAnswerCacheBound: the cache stays within its bytes, evicting.
func TestAnswerCacheBound(t *testing.T) {
	c := newAnswerCache(64 * 1024)
	e := &cachedAnswer{body: make([]byte, 100)}
	for i := range 10000 {
		c.put([]byte{byte(i), byte(i >> 8), 'k', 'e', 'y'}, e)
	}
	total := 0
	for i := range c.shards {
		sh := &c.shards[i]
		if sh.bytes > c.shardBytes {
			t.Errorf("shard %d holds %d bytes, over its %d", i, sh.bytes, c.shardBytes)
		}
		sum := 0
		for k, e := range sh.entries {
			sum += len(k) + len(e.body) + entryOverhead
		}
		if sum != sh.bytes {
			t.Errorf("shard %d counts %d bytes, holds %d", i, sh.bytes, sum)
		}
		total += sum
	}
	if total > 64*1024 || c.len() < 64*1024/(5+100+entryOverhead)/2 {
		t.Errorf("%d entries, %d bytes: want about a full 64 KiB", c.len(), total)
	}
	if newAnswerCache(0) != nil {
		t.Error("a 0-byte cache should be none")
	}
}

// TestAnswerCacheRateLimited: reused answers count against the rate
// limit like built ones.
func TestAnswerCacheRateLimited(t *testing.T) {
	cfg := testConfig(t)
	cfg.RateLimit = RateLimitConfig{ResponsesPerSecond: 1, Burst: 5, Slip: 2, IPv4Prefix: 24, IPv6Prefix: 56}
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Deps{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	pkt := packQuery(t, query("www.cdn.test.", dns.TypeA, ""), 9)
	sent, tc := 0, 0
	for range 20 {
		b := s.answerPacket(pkt, netip.MustParseAddr("192.0.2.1"), make([]byte, 1233), nil)
		if b == nil {
			continue
		}
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			t.Fatal(err)
		}
		if r.Truncated {
			tc++
		} else {
			sent++
		}
	}
	if sent != 5 || tc == 0 {
		t.Errorf("%d answers and %d slips for 20 queries at burst 5, want 5 and some", sent, tc)
	}
	if got := testutil.ToFloat64(s.metrics.limited.WithLabelValues("drop")); got == 0 {
		t.Error("no drops counted")
	}
	if cacheCount(reg, "hit") == 0 {
		t.Error("no cache hits: the test did not reach the reuse path")
	}
}

// TestAnswerCacheConcurrent: workers filling and reusing the same and
// different entries while the table is swapped (run with -race).
func TestAnswerCacheConcurrent(t *testing.T) {
	s, uncached, _ := cachePair(t, func(c *Config) { c.Answer.CacheBytes = 8 << 10 }) // small: evictions too
	var pkts, wants [][]byte
	src := netip.MustParseAddr("127.0.0.1")
	for _, subnet := range []string{"", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/48"} {
		for _, name := range []string{"www.cdn.test.", "static.cdn.test.", "nope.cdn.test.", "a.sites.cdn.test."} {
			p := packQuery(t, query(name, dns.TypeA, subnet), 42)
			pkts = append(pkts, p)
			wants = append(wants, slices.Clone(uncached.answerPacket(p, src, make([]byte, 1233), nil)))
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			buf := make([]byte, 1233)
			for i := range 2000 {
				if got := s.answerPacket(pkts[i%len(pkts)], src, buf, nil); !bytes.Equal(got, wants[i%len(pkts)]) {
					t.Errorf("query %d: answer %x, want %x", i%len(pkts), got, wants[i%len(pkts)])
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			s.setTable(newTable(s.cfg.Hosts, edgesFromConfig(s.cfg.Edges), true))
		}
	})
	wg.Wait()
}
