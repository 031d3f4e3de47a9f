package geodns

import (
	"fmt"
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
			w := new(workerState) // as a UDP worker has, with a batch of one
			b.ReportAllocs()
			for b.Loop() {
				if out := s.answerPacket(pkt, src, buf, w); len(out) == 0 {
					b.Fatal("no answer")
				}
				s.flush(w)
			}
		})
	}
}

// BenchmarkAnswerPacketWorkers is the cached UDP hot path in as many
// workers as Ps, each with its own state, flushing its tally every batch
// queries as a worker does after each recvmmsg: what the workers share
// (the metrics) is what keeps them from scaling with cores.
func BenchmarkAnswerPacketWorkers(b *testing.B) {
	for _, batch := range []int{1, 4, 32} {
		b.Run(fmt.Sprintf("batch-%d", batch), func(b *testing.B) {
			cfg := testConfig(b)
			cfg.RateLimit.ResponsesPerSecond = 0
			s, err := New(cfg, Deps{})
			if err != nil {
				b.Fatal(err)
			}
			pkt, err := query("www.cdn.test.", dns.TypeA, "198.51.100.0/24").Pack()
			if err != nil {
				b.Fatal(err)
			}
			src := netip.MustParseAddr("127.0.0.1")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w, buf := new(workerState), make([]byte, 0, 1232)
				for i := 1; pb.Next(); i++ {
					if out := s.answerPacket(pkt, src, buf, w); len(out) == 0 {
						b.Error("no answer")
						return
					}
					if i%batch == 0 {
						s.flush(w)
					}
				}
				s.flush(w)
			})
		})
	}
}
