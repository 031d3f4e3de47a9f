package cache

import (
	"slices"
	"testing"
)

func TestSieve(t *testing.T) {
	s := newSieve()
	for h := uint64(1); h <= 5; h++ {
		s.insert(h, 10)
	}
	s.touch(1)
	s.touch(3)
	var evicted []uint64
	for range 3 {
		h, ok := s.victim()
		if !ok {
			t.Fatal("victim on a non-empty index = false")
		}
		s.remove(h)
		evicted = append(evicted, h)
	}
	// The hand spares 1 and 3 once (clearing their bits), evicting 2, 4, 5.
	if want := []uint64{2, 4, 5}; !slices.Equal(evicted, want) {
		t.Errorf("evicted %v, want %v", evicted, want)
	}
	if s.len() != 2 || s.bytes != 20 {
		t.Errorf("after evictions: %d objects, %d bytes; want 2, 20", s.len(), s.bytes)
	}
	s.insert(1, 50) // a new size for a held object
	if s.bytes != 60 || s.size(1) != 50 {
		t.Errorf("resize: %d bytes, size %d; want 60, 50", s.bytes, s.size(1))
	}
	s.insert(6, 1)
	var order []uint64
	s.each(func(h uint64, _ int64) { order = append(order, h) })
	if want := []uint64{1, 3, 6}; !slices.Equal(order, want) {
		t.Errorf("oldest-first order %v, want %v", order, want)
	}
	for _, h := range order {
		s.remove(h)
	}
	if _, ok := s.victim(); ok || s.bytes != 0 {
		t.Errorf("empty index: victim found or %d bytes left", s.bytes)
	}
}

// BenchmarkSieveTouch is the cost a disk hit pays in the index.
func BenchmarkSieveTouch(b *testing.B) {
	s := newSieve()
	for h := range uint64(1 << 16) {
		s.insert(h*0x9e3779b97f4a7c15, 100)
	}
	var i uint64
	for b.Loop() {
		s.touch((i & 0xffff) * 0x9e3779b97f4a7c15)
		i++
	}
}
