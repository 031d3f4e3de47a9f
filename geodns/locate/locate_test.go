package locate_test

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/selfcdn/cdn/geodns/locate"
	"github.com/selfcdn/cdn/geodns/locate/locatetest"
)

var update = flag.Bool("update", false, "rewrite testdata/test-city.mmdb")

const testDB = "../testdata/test-city.mmdb"

// The shipped test database is the one the helper builds.
func TestShippedDatabase(t *testing.T) {
	var b bytes.Buffer
	if err := locatetest.WriteCity(&b, locatetest.Places); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(testDB, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	shipped, err := os.ReadFile(testDB)
	if err != nil {
		t.Fatalf("%v (run go test ./geodns/locate -update)", err)
	}
	if !bytes.Equal(shipped, b.Bytes()) {
		t.Fatalf("%s differs from what locatetest builds; run go test ./geodns/locate -update", testDB)
	}
}

func TestMMDB(t *testing.T) {
	db, err := locate.OpenMMDB(testDB)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr      string
		continent string
		country   string
		lat       float64
		bits      int
		known     bool
	}{
		{addr: "127.0.0.1", continent: "NA", country: "US", lat: 39.04, bits: 8, known: true},
		{addr: "::ffff:127.0.0.1", continent: "NA", country: "US", lat: 39.04, bits: 8, known: true},
		{addr: "192.0.2.77", continent: "EU", country: "DE", lat: 50.11, bits: 24, known: true},
		{addr: "198.51.100.0", continent: "AS", country: "JP", lat: 35.68, bits: 24, known: true},
		{addr: "203.0.113.255", continent: "SA", country: "BR", lat: -23.55, bits: 24, known: true},
		{addr: "2001:db8:1234::1", continent: "OC", country: "AU", lat: -33.87, bits: 32, known: true},
		{addr: "10.1.2.3", known: false},
		{addr: "2a00::1", known: false},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			for range 2 { // the second lookup comes from the record cache
				loc, bits := db.Locate(netip.MustParseAddr(tc.addr))
				if loc.Known() != tc.known {
					t.Fatalf("known = %v, want %v (%+v)", loc.Known(), tc.known, loc)
				}
				if !tc.known {
					if bits <= 0 {
						t.Errorf("a miss holds for /%d, want the empty network's length", bits)
					}
					continue
				}
				if loc.Continent != tc.continent || loc.Country != tc.country || loc.Lat != tc.lat || bits != tc.bits {
					t.Errorf("got %+v /%d, want %s %s lat %g /%d", loc, bits, tc.continent, tc.country, tc.lat, tc.bits)
				}
			}
		})
	}
}

func TestMMDBReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	write := func(places []locatetest.Place) {
		var b bytes.Buffer
		if err := locatetest.WriteCity(&b, places); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(locatetest.Places[:3])
	db, err := locate.OpenMMDB(path)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("198.51.100.1")
	if loc, _ := db.Locate(addr); loc.Known() {
		t.Fatalf("198.51.100.1 placed before it is in the file: %+v", loc)
	}
	write(locatetest.Places)
	if err := db.Reload(); err != nil {
		t.Fatal(err)
	}
	if loc, _ := db.Locate(addr); loc.Country != "JP" {
		t.Fatalf("after reload 198.51.100.1 = %+v, want JP", loc)
	}
	os.WriteFile(path, []byte("not a database"), 0o644)
	if err := db.Reload(); err == nil {
		t.Fatal("reloading garbage succeeded")
	}
	if loc, _ := db.Locate(addr); loc.Country != "JP" {
		t.Fatalf("a failed reload dropped the database in use: %+v", loc)
	}
}

func TestChain(t *testing.T) {
	db, err := locate.OpenMMDB(testDB)
	if err != nil {
		t.Fatal(err)
	}
	cidr := locate.NewCIDRMap(map[netip.Prefix]string{
		netip.MustParsePrefix("192.0.2.128/25"): "lab",
		netip.MustParsePrefix("10.0.0.0/8"):     "office",
		netip.MustParsePrefix("10.9.0.0/16"):    "branch",
		netip.MustParsePrefix("fd00::/8"):       "office",
	})
	chain := locate.Chain{cidr, db}
	for _, tc := range []struct {
		addr    string
		region  string
		country string
		bits    int
	}{
		{addr: "192.0.2.200", region: "lab", bits: 25},
		{addr: "192.0.2.1", country: "DE", bits: 25},   // the map's /25 next door narrows the scope
		{addr: "10.1.1.1", region: "office", bits: 13}, // 10.9/16 (shares 12 bits) narrows the /8's answer
		{addr: "10.9.1.1", region: "branch", bits: 16}, // longest prefix wins
		{addr: "::ffff:10.9.1.1", region: "branch", bits: 16},
		{addr: "fd12::1", region: "office", bits: 8},
		{addr: "2001:db8::1", country: "AU", bits: 32},
	} {
		loc, bits := chain.Locate(netip.MustParseAddr(tc.addr))
		if loc.Region != tc.region || loc.Country != tc.country || bits != tc.bits {
			t.Errorf("%s: got %+v /%d, want region %q country %q /%d", tc.addr, loc, bits, tc.region, tc.country, tc.bits)
		}
	}
}

// Every address inside the network a CIDR answer claims to hold for gets
// that same answer (what a resolver caching by ECS scope relies on).
func TestCIDRScopeHolds(t *testing.T) {
	m := locate.NewCIDRMap(map[netip.Prefix]string{
		netip.MustParsePrefix("10.0.0.0/8"):    "a",
		netip.MustParsePrefix("10.1.2.0/24"):   "b",
		netip.MustParsePrefix("10.1.2.128/25"): "c",
		netip.MustParsePrefix("10.200.0.0/16"): "d",
		netip.MustParsePrefix("172.16.0.0/12"): "e",
		netip.MustParsePrefix("fd00::/8"):      "f",
		netip.MustParsePrefix("fd00:1::/32"):   "g",
	})
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var addr netip.Addr
		if rng.IntN(4) == 0 {
			var b [16]byte
			b[0], b[1], b[2], b[3] = 0xfd, 0, 0, byte(rng.IntN(3))
			for i := 4; i < 16; i++ {
				b[i] = byte(rng.Uint32())
			}
			addr = netip.AddrFrom16(b)
		} else {
			addr = netip.AddrFrom4([4]byte{byte([]int{10, 10, 10, 172, 11}[rng.IntN(5)]), byte(rng.IntN(4) * 66), byte(rng.IntN(4)), byte(rng.Uint32())})
		}
		loc, bits := m.Locate(addr)
		block, _ := addr.Prefix(bits)
		// Another address of the block: flip random bits past the prefix.
		other := addr.As16()
		off := 128 - addr.BitLen()
		for i := bits; i < addr.BitLen(); i++ {
			if rng.IntN(2) == 0 {
				other[(off+i)/8] ^= 1 << (7 - (off+i)%8)
			}
		}
		o := netip.AddrFrom16(other)
		if addr.Is4() {
			o = o.Unmap()
		}
		if !block.Contains(o) {
			t.Fatalf("test bug: %s not in %s", o, block)
		}
		if got, _ := m.Locate(o); got.Region != loc.Region {
			t.Fatalf("%s answers %q for /%d, but %s in that block answers %q", addr, loc.Region, bits, o, got.Region)
		}
	}
}

func BenchmarkMMDBLocate(b *testing.B) {
	db, err := locate.OpenMMDB(testDB)
	if err != nil {
		b.Fatal(err)
	}
	addr := netip.MustParseAddr("198.51.100.7")
	for b.Loop() {
		db.Locate(addr)
	}
}
