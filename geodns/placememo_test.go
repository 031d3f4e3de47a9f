package geodns

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/selfcdn/cdn/geodns/locate"
)

// countingLocator counts the lookups that reach the locator it wraps.
type countingLocator struct {
	locate.Locator
	calls atomic.Int64
}

func (c *countingLocator) Locate(a netip.Addr) (locate.Location, int) {
	c.calls.Add(1)
	return c.Locator.Locate(a)
}

func TestPlaceMemo(t *testing.T) {
	s, err := New(testConfig(t), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if s.mmdb == nil {
		t.Fatal("the test configuration has no database")
	}
	counted := &countingLocator{Locator: s.locator}
	s.locator = counted
	var memo placeMemo

	// Many more addresses than slots, both families, each asked twice in
	// a row: always the locator's answer, the second time from memory.
	var addrs []netip.Addr
	for i := range 1000 {
		addrs = append(addrs,
			netip.AddrFrom4([4]byte{192, 0, byte(i >> 8), byte(i)}), netip.AddrFrom4([4]byte{198, 51, 100 + byte(i>>8), byte(i)}),
			netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i), 15: 1}))
	}
	for _, a := range addrs {
		want, wantBits := counted.Locator.Locate(a)
		before := counted.calls.Load()
		for range 2 {
			if loc, bits := s.locate(&memo, a); loc != want || bits != wantBits {
				t.Fatalf("%v: %+v /%d, the locator says %+v /%d", a, loc, bits, want, wantBits)
			}
		}
		if n := counted.calls.Load() - before; n != 1 {
			t.Fatalf("%v located %d times for two questions, want once", a, n)
		}
	}

	// A reloaded database is asked again.
	a := netip.MustParseAddr("192.0.2.1")
	s.locate(&memo, a)
	before := counted.calls.Load()
	if err := s.mmdb.Reload(); err != nil {
		t.Fatal(err)
	}
	s.locate(&memo, a)
	s.locate(&memo, a)
	if n := counted.calls.Load() - before; n != 1 {
		t.Fatalf("after a reload, %v located %d times for two questions, want once", a, n)
	}
	if s.locate(nil, a); counted.calls.Load()-before != 2 {
		t.Fatal("without a memo the locator was not asked")
	}
}
