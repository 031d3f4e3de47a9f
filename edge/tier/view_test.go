package tier

import (
	"fmt"
	"math"
	"testing"
	"time"
)

func members(region string, n int, since time.Time) []Member {
	var ms []Member
	for i := range n {
		ms = append(ms, Member{Name: fmt.Sprintf("%s-%d", region, i), Region: region, URL: fmt.Sprintf("http://127.0.0.%d:80", i+2), Up: true, Since: since})
	}
	return ms
}

func homeOf(v *View, region, key string, now time.Time, rampup time.Duration) string {
	return v.Rank(region, key, now, rampup)[0].Name
}

// TestMembershipMovesOneNth adds and removes an edge and counts the keys
// whose home changed, over 100,000 keys: rendezvous moves only the
// joining or leaving edge's share, about 1/N.
func TestMembershipMovesOneNth(t *testing.T) {
	const keys = 100_000
	now := time.Now()
	old := now.Add(-time.Hour)
	for _, n := range []int{2, 4, 8} {
		t.Run(fmt.Sprint(n, " edges"), func(t *testing.T) {
			before := NewView(members("r", n, old))
			grown := NewView(members("r", n+1, old))
			shrunk := NewView(members("r", n, old)[1:])
			var joined, left, leftOwned int
			counts := map[string]int{}
			for i := range keys {
				k := fmt.Sprintf("https://example.com/obj/%d", i)
				b := homeOf(before, "r", k, now, 0)
				counts[b]++
				if g := homeOf(grown, "r", k, now, 0); g != b {
					joined++
					if g != fmt.Sprintf("r-%d", n) {
						t.Fatalf("key %s moved from %s to %s, not to the new edge", k, b, g)
					}
				}
				if s := homeOf(shrunk, "r", k, now, 0); s != b {
					left++
					if b != "r-0" {
						t.Fatalf("key %s moved off %s, which did not leave", k, b)
					}
				}
				if b == "r-0" {
					leftOwned++
				}
			}
			if left != leftOwned {
				t.Errorf("removing r-0 moved %d keys, it owned %d", left, leftOwned)
			}
			wantJoin := float64(keys) / float64(n+1)
			if math.Abs(float64(joined)-wantJoin) > 0.05*wantJoin {
				t.Errorf("adding an edge to %d moved %d keys, want about %.0f (1/%d)", n, joined, wantJoin, n+1)
			}
			for name, c := range counts {
				if want := float64(keys) / float64(n); math.Abs(float64(c)-want) > 0.05*want {
					t.Errorf("%s homes %d keys, want about %.0f", name, c, want)
				}
			}
			t.Logf("%d edges: join moved %d/%d keys (%.2f%%, ideal %.2f%%), leave moved %d (%.2f%%, ideal %.2f%%)",
				n, joined, keys, 100*float64(joined)/keys, 100/float64(n+1), left, 100*float64(left)/keys, 100/float64(n))
		})
	}
}

// TestRampup: an edge that just came up homes a small share of keys,
// growing to its full share over the ramp-up.
func TestRampup(t *testing.T) {
	now := time.Now()
	ms := members("r", 4, now.Add(-time.Hour))
	ms[3].Since = now // just came up
	v := NewView(ms)
	share := func(at time.Time) float64 {
		n := 0
		for i := range 20_000 {
			if homeOf(v, "r", fmt.Sprint(i), at, 30*time.Second) == "r-3" {
				n++
			}
		}
		return float64(n) / 20_000
	}
	tests := []struct {
		after    time.Duration
		min, max float64
	}{
		{0, 0, 0.01},
		{3 * time.Second, 0.01, 0.06},  // weight 0.1 of 3.1
		{15 * time.Second, 0.10, 0.20}, // 0.5 of 3.5
		{30 * time.Second, 0.23, 0.27}, // full
		{time.Hour, 0.23, 0.27},
	}
	for _, tt := range tests {
		if got := share(now.Add(tt.after)); got < tt.min || got > tt.max {
			t.Errorf("%s after coming up: share %.3f, want %.2f-%.2f", tt.after, got, tt.min, tt.max)
		}
	}
}

func TestWeights(t *testing.T) {
	ms := members("r", 2, time.Time{})
	ms[1].Weight = 3
	v := NewView(ms)
	n := 0
	for i := range 40_000 {
		if homeOf(v, "r", fmt.Sprint(i), time.Now(), 0) == "r-1" {
			n++
		}
	}
	if share := float64(n) / 40_000; share < 0.72 || share > 0.78 {
		t.Errorf("weight 3 of 4 homes %.3f of keys, want about 0.75", share)
	}
}

func TestHomesAreUpWithURL(t *testing.T) {
	ms := members("r", 3, time.Time{})
	ms[0].Up = false
	ms[1].URL = ""
	v := NewView(ms)
	if h := v.Homes("r"); len(h) != 1 || h[0].Name != "r-2" {
		t.Fatalf("homes %v, want only r-2", h)
	}
	if NewView(ms).Epoch() != v.Epoch() {
		t.Error("the same membership gave two epochs")
	}
	ms[0].Up = true
	if NewView(ms).Epoch() == v.Epoch() {
		t.Error("an edge coming up left the epoch as it was")
	}
}

func TestNearest(t *testing.T) {
	eu := Member{Name: "fra", Region: "eu", Lat: 50.1, Lon: 8.7, URL: "http://a", Up: true}
	us := Member{Name: "nyc", Region: "us", Lat: 40.7, Lon: -74, URL: "http://b", Up: true}
	ap := Member{Name: "sin", Region: "ap", Lat: 1.35, Lon: 103.8, URL: "http://c", Up: true}
	euDown := eu
	euDown.Up = false
	tests := []struct {
		name   string
		ms     []Member
		shield string
		want   string
	}{
		{"shield up", []Member{eu, us, ap}, "eu", "eu"},
		{"shield down: next nearest", []Member{euDown, us, ap}, "eu", "us"},
		{"unknown region", []Member{eu, us}, "mars", ""},
		{"nothing up", []Member{euDown}, "eu", ""},
	}
	for _, tt := range tests {
		if got := NewView(tt.ms).Nearest(tt.shield); got != tt.want {
			t.Errorf("%s: Nearest(%s) = %q, want %q", tt.name, tt.shield, got, tt.want)
		}
	}
}
