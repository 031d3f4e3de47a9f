package geodns

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkAnswerPacket is the UDP hot path without the sockets: parse a
// query, answer it (locate, pick an edge), limit, pack.
func BenchmarkAnswerPacket(b *testing.B) {
	for _, bc := range []struct {
		name   string
		subnet string
	}{
		{"plain", ""},
		{"ecs", "198.51.100.0/24"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := testConfig(b)
			cfg.RateLimit.ResponsesPerSecond = 0
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
