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
	}{
		{"plain", "", false},
		{"ecs", "198.51.100.0/24", false},
		{"plain-nocache", "", true},
		{"ecs-nocache", "198.51.100.0/24", true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testConfig(b)
			cfg.RateLimit.ResponsesPerSecond = 0
			if bc.noCache {
				cfg.Answer.CacheBytes = 0
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
			b.ReportAllocs()
			for b.Loop() {
				if out := s.answerPacket(pkt, src, buf); len(out) == 0 {
					b.Fatal("no answer")
				}
			}
		})
	}
}
