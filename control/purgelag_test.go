package control

import (
	"testing"
	"time"
)

func TestPurgeLagTarget(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	type obs struct {
		at   float64
		head uint64
	}
	for _, tc := range []struct {
		name    string
		observe []obs
		now     float64
		want    uint64
		ok      bool
	}{
		{"nothing seen", nil, 10, 0, false},
		{"not watched for the lag yet", []obs{{0, 5}, {2, 6}}, 4, 0, false},
		{"the version as of lag ago", []obs{{0, 5}, {2, 6}, {4, 9}, {6, 12}}, 7, 6, true},
		{"exactly lag ago counts", []obs{{0, 5}, {2, 6}, {4, 9}}, 7, 6, true},
		{"a quiet log", []obs{{0, 7}, {2, 7}, {4, 7}, {6, 7}, {8, 7}}, 9, 7, true},
		{"a log made anew", []obs{{0, 40}, {2, 2}, {4, 3}, {6, 3}}, 9, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := purgeLag{lag: 5 * time.Second}
			for _, o := range tc.observe {
				p.observe(at(o.at), o.head)
			}
			v, ok := p.target(at(tc.now))
			if v != tc.want || ok != tc.ok {
				t.Errorf("target = %d, %v; want %d, %v", v, ok, tc.want, tc.ok)
			}
			if len(p.samples) > 5 {
				t.Errorf("%d samples kept, want those within the lag and one before", len(p.samples))
			}
		})
	}
}
