package sketch

import (
	"math/rand/v2"
	"testing"
)

func TestCountsAndAges(t *testing.T) {
	s := New(1 << 10)
	for i := range 5 {
		if got := s.Add(42); got != i+1 {
			t.Fatalf("add %d: estimate %d, want %d", i+1, got, i+1)
		}
	}
	if got := s.Estimate(42); got != 5 {
		t.Fatalf("estimate = %d, want 5", got)
	}
	if got := s.Estimate(43); got != 0 {
		t.Fatalf("unseen key: estimate %d, want 0", got)
	}
	// 10 × width additions of other keys halve every counter once.
	for i := range 10<<10 - 5 {
		s.Add(uint64(1000 + i%7))
	}
	if got := s.Estimate(42); got != 2 {
		t.Fatalf("after aging: estimate %d, want 5/2 = 2", got)
	}
}

func TestSaturates(t *testing.T) {
	s := New(1 << 16)
	for range 300 {
		s.Add(7)
	}
	if got := s.Estimate(7); got != 255 {
		t.Fatalf("estimate = %d, want the cap 255", got)
	}
}

// Popular keys must stay ahead of the crowd in a sketch as wide as the
// number of keys: the property admission depends on.
func TestRanksPopularAboveRare(t *testing.T) {
	const keys = 1 << 14
	s := New(keys)
	r := rand.New(rand.NewPCG(1, 2))
	for range 5 * keys {
		s.Add(r.Uint64N(keys))
	}
	for h := range uint64(100) {
		for range 20 {
			s.Add(1<<40 + h)
		}
	}
	wrong := 0
	for h := range uint64(100) {
		if s.Estimate(1<<40+h) <= s.Estimate(r.Uint64N(keys)) {
			wrong++
		}
	}
	if wrong > 2 {
		t.Fatalf("%d of 100 popular keys estimated at or below a random rare one", wrong)
	}
}

func TestWidthRounds(t *testing.T) {
	for _, tt := range []struct{ in, want int }{{0, 64}, {1, 64}, {64, 64}, {65, 128}, {1000, 1024}, {1 << 20, 1 << 20}} {
		if got := int(New(tt.in).mask) + 1; got != tt.want {
			t.Errorf("New(%d): width %d, want %d", tt.in, got, tt.want)
		}
	}
}

func BenchmarkAdd(b *testing.B) {
	s := New(1 << 20)
	var h uint64
	for b.Loop() {
		h++
		s.Add(h)
	}
}
