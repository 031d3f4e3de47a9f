package geodns

import (
	"encoding/binary"
	"net/netip"

	"github.com/selfcdn/cdn/geodns/locate"
)

// placeMemo is one UDP worker's memory of where its last clients are.
// A resolver asks again and again from one address, or for one client
// subnet, and locating it (the CIDR map, then the database's tree and
// record cache) costs more than the rest of a cached answer. It is
// direct-mapped: a slot holds the last address that hashed to it. Not
// safe for concurrent use.
type placeMemo [placeSlots]placeSlot

const placeSlots = 256

type placeSlot struct {
	addr    netip.Addr
	version uint64 // the database's Version it was located with
	loc     locate.Location
	bits    int
}

// locate is s.locator.Locate(addr), from memo when it holds addr as
// located with the database in use (m nil: no memory).
func (s *Server) locate(m *placeMemo, addr netip.Addr) (locate.Location, int) {
	if m == nil {
		return s.locator.Locate(addr)
	}
	var version uint64
	if s.mmdb != nil {
		// Read before locating: a reload in between leaves the slot
		// marked with the old version, to be located again.
		version = s.mmdb.Version()
	}
	a := addr.As16()
	h := (binary.LittleEndian.Uint64(a[:8]) ^ binary.LittleEndian.Uint64(a[8:])) * 0x9e3779b97f4a7c15
	slot := &m[h>>56]
	if slot.addr == addr && slot.version == version {
		return slot.loc, slot.bits
	}
	loc, bits := s.locator.Locate(addr)
	*slot = placeSlot{addr: addr, version: version, loc: loc, bits: bits}
	return loc, bits
}
