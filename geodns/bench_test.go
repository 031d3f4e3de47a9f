package geodns

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkAnswerPacket is the UDP hot path without the sockets: parse a
// query, answer it (locate, pick an edge), limit, pack; with the answer
// cache (every query after the first a reuse) and without (nocache).
func BenchmarkAnswerPacket(b *testing.B) {
	for _, bc := range []struct {
		name    string
		subnet  string
		noCache bool
		// drawn adds a second edge to the client's region, answered with
		// the default two records: every answer is drawn.
		drawn bool
	}{
		{"plain", "", false, false},
		{"ecs", "198.51.100.0/24", false, false},
		{"plain-nocache", "", true, false},
		{"ecs-nocache", "198.51.100.0/24", true, false},
		{"drawn", "", false, true},
		{"drawn-nocache", "", true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testConfig(b)
			cfg.RateLimit.ResponsesPerSecond = 0
			if bc.noCache {
				cfg.Answer.CacheBytes = 0
			}
			if bc.drawn {
				cfg.Answer.Records = 2
				cfg.Edges = append(cfg.Edges, EdgeConfig{Name: "na-2", Region: "na", Lat: 40.7, Lon: -74, Addrs: []string{"127.0.1.2"}})
			}
			s, err := New(cfg, Deps{})
			if err != nil {
				b.Fatal(err)
			}
			pkt, err := query("www.cdn.test.", dns.TypeA, bc.subnet).Pack()
			if err != nil {
				b.Fatal(err)
			}
			src := netip.MustParseAddr("127.0.0.1")
			buf := make([]byte, 0, 1232)
			var memo placeMemo // as a UDP worker has
			b.ReportAllocs()
			for b.Loop() {
				if out := s.answerPacket(pkt, src, buf, &memo); len(out) == 0 {
					b.Fatal("no answer")
				}
			}
		})
	}
}
