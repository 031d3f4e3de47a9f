package locate

import (
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"
)

// MMDB locates addresses with a MaxMind-format City database
// (GeoLite2-City, GeoIP2-City, DB-IP City Lite). The file is read into
// memory, so replacing it on disk (as geoipupdate does) never pulls pages
// from under a lookup; Reload swaps in the new file.
type MMDB struct {
	path  string
	db    atomic.Pointer[mmdbState]
	loads atomic.Uint64
}

// mmdbState is one loaded file and the records decoded from it so far.
type mmdbState struct {
	reader  *maxminddb.Reader
	version uint64 // which load this is, from 1
	// decoded caches a Location per data record (by its offset in the
	// file): a city database has far fewer records than networks, and
	// decoding is most of a lookup's cost.
	decoded sync.Map // uintptr -> *decodedRecord
	size    atomic.Int64
	// recent is a direct-mapped front of decoded, the record last found
	// in each slot: one atomic load where the map hashes an interface.
	recent [recentSlots]atomic.Pointer[decodedRecord]
}

const (
	recentBits  = 12
	recentSlots = 1 << recentBits
)

// decodedRecord is a record's Location, with the offset that names it.
type decodedRecord struct {
	off uintptr
	loc Location
}

// recentSlot is where off's record sits in recent (a Fibonacci hash:
// record offsets are close together).
func (st *mmdbState) recentSlot(off uintptr) *atomic.Pointer[decodedRecord] {
	return &st.recent[(uint64(off)*0x9e3779b97f4a7c15)>>(64-recentBits)]
}

// maxDecoded bounds the record cache; past it, lookups decode every time.
const maxDecoded = 1 << 20

// cityRecord is the part of a City record a location needs.
type cityRecord struct {
	Continent struct {
		Code string `maxminddb:"code"`
	} `maxminddb:"continent"`
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
	Location struct {
		Latitude  *float64 `maxminddb:"latitude"`
		Longitude *float64 `maxminddb:"longitude"`
	} `maxminddb:"location"`
}

// OpenMMDB loads the database at path.
func OpenMMDB(path string) (*MMDB, error) {
	m := &MMDB{path: path}
	if err := m.Reload(); err != nil {
		return nil, err
	}
	return m, nil
}

// Reload reads the file again. On error the database in use stays.
func (m *MMDB) Reload() error {
	b, err := os.ReadFile(m.path)
	if err != nil {
		return fmt.Errorf("read geoip database: %w", err)
	}
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return fmt.Errorf("open geoip database %s: %w", m.path, err)
	}
	m.db.Store(&mmdbState{reader: r, version: m.loads.Add(1)})
	return nil
}

// Version tells loads apart: it changes when Reload swaps in a file, so
// that what was located with the old one can be told from the new.
func (m *MMDB) Version() uint64 { return m.db.Load().version }

// Metadata describes the loaded file, for logs.
func (m *MMDB) Metadata() maxminddb.Metadata { return m.db.Load().reader.Metadata }

// Locate looks addr up. A database without a record for addr (or with a
// record that places nothing) gives an unknown Location.
func (m *MMDB) Locate(addr netip.Addr) (Location, int) {
	st := m.db.Load()
	res := st.reader.Lookup(addr.Unmap())
	bits := 0
	if p := res.Prefix(); p.IsValid() {
		bits = p.Bits()
	}
	if !res.Found() {
		return Location{}, bits
	}
	off := res.Offset()
	slot := st.recentSlot(off)
	if r := slot.Load(); r != nil && r.off == off {
		return r.loc, bits
	}
	if v, ok := st.decoded.Load(off); ok {
		r := v.(*decodedRecord)
		slot.Store(r)
		return r.loc, bits
	}
	var rec cityRecord
	if err := res.Decode(&rec); err != nil {
		return Location{}, bits // a record of another shape: nothing to steer by
	}
	loc := Location{Continent: rec.Continent.Code, Country: rec.Country.ISOCode}
	if loc.Country == "" {
		loc.Country = rec.RegisteredCountry.ISOCode
	}
	if lat, lon := rec.Location.Latitude, rec.Location.Longitude; lat != nil && lon != nil {
		loc.Lat, loc.Lon, loc.HasPoint = *lat, *lon, true
	}
	if st.size.Add(1) <= maxDecoded {
		r := &decodedRecord{off: off, loc: loc}
		st.decoded.Store(off, r)
		slot.Store(r)
	}
	return loc, bits
}
