package geodns

import (
	"encoding/binary"
	"math"
	"net/netip"

	"github.com/selfcdn/cdn/geodns/locate"
)

// fastQuery is a UDP query in the one shape nearly every resolver sends:
// one question with a plain name, no records but at most one OPT, whose
// options are at most one well-formed Client Subnet and at most one
// well-formed DNS COOKIE (BIND and Unbound send one on every query; this
// server does not implement cookies, and RFC 7873 has it ignore them, as
// the library's way does, so a cookie changes nothing in the answer). parseQuery reads it
// in place, without the library's Unpack; its fields are slices of the
// packet. Anything else (odd names, other options, trailing bytes,
// compression) is not a fastQuery and goes the library's way, so the fast
// path never has to decide what a strange packet means.
type fastQuery struct {
	flags    uint16 // the header's second word (QR, opcode, RD, CD, ...)
	question []byte // qname, qtype and qclass as sent (case kept)
	edns     bool
	udpSize  uint16 // the OPT's class
	optTTL   uint32 // extended rcode, version, DO and Z
	ecs      bool
	family   uint16 // ECS address family: 1 (IPv4) or 2 (IPv6)
	source   uint8  // ECS source prefix length
	ecsAddr  []byte // ECS address bytes, exactly ceil(source/8)
}

// Wire constants of the fast path (RFC 1035 4.1, RFC 6891 6.1.2, RFC 7871 6).
const (
	headerLen    = 12
	typeOPT      = 41
	optionECS    = 8
	optionCookie = 10
	flagQR       = 1 << 15
	opcodeShift  = 11
)

// parseQuery reads pkt as a fastQuery; ok is false when pkt is not one
// (which says nothing about whether it is valid DNS).
func parseQuery(pkt []byte) (q fastQuery, ok bool) {
	if len(pkt) < headerLen {
		return q, false
	}
	q.flags = binary.BigEndian.Uint16(pkt[2:])
	if q.flags&flagQR != 0 || (q.flags>>opcodeShift)&0xF != 0 {
		return q, false // responses and other opcodes: acceptQuery's business
	}
	qd, an, ns, ar := binary.BigEndian.Uint16(pkt[4:]), binary.BigEndian.Uint16(pkt[6:]),
		binary.BigEndian.Uint16(pkt[8:]), binary.BigEndian.Uint16(pkt[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return q, false
	}
	off, ok := skipPlainName(pkt, headerLen)
	if !ok || off+4 > len(pkt) {
		return q, false
	}
	off += 4 // qtype, qclass
	q.question = pkt[headerLen:off]
	if ar == 0 {
		return q, off == len(pkt)
	}
	// The OPT record: the root name, type 41, then class, TTL, rdata.
	if off+11 > len(pkt) || pkt[off] != 0 || binary.BigEndian.Uint16(pkt[off+1:]) != typeOPT {
		return q, false
	}
	q.edns = true
	q.udpSize = binary.BigEndian.Uint16(pkt[off+3:])
	q.optTTL = binary.BigEndian.Uint32(pkt[off+5:])
	rdlen := int(binary.BigEndian.Uint16(pkt[off+9:]))
	rdata := pkt[off+11:]
	if rdlen != len(rdata) {
		return q, false // short, or bytes after the OPT
	}
	return q, q.parseOptions(rdata)
}

// parseOptions reads the OPT's options: at most one Client Subnet and at
// most one cookie, each whole, and nothing else.
func (q *fastQuery) parseOptions(rdata []byte) bool {
	cookie := false
	for len(rdata) > 0 {
		if len(rdata) < 4 {
			return false
		}
		code, n := binary.BigEndian.Uint16(rdata), 4+int(binary.BigEndian.Uint16(rdata[2:]))
		if n > len(rdata) {
			return false
		}
		switch option := rdata[:n]; {
		case code == optionECS && !q.ecs:
			if !q.parseECS(option) {
				return false
			}
		case code == optionCookie && !cookie:
			// A client cookie of 8 bytes, with or without a server
			// cookie of 8-32 (RFC 7873 4): other lengths are FORMERR's
			// business, not ours to decide here.
			if l := n - 4; l != 8 && (l < 16 || l > 40) {
				return false
			}
			cookie = true
		default:
			return false
		}
		rdata = rdata[n:]
	}
	return true
}

// skipPlainName returns the offset after the name at off, if every label
// is 1-63 bytes of letters, digits, '-' and '_' (which the library
// neither escapes nor rejects) and the name fits 255 bytes.
func skipPlainName(pkt []byte, off int) (int, bool) {
	start := off
	for {
		if off >= len(pkt) {
			return 0, false
		}
		n := int(pkt[off])
		off++
		if n == 0 {
			return off, off-start <= 255
		}
		if n > 63 || off+n > len(pkt) {
			return 0, false // a pointer, an extended label type, or past the end
		}
		for _, c := range pkt[off : off+n] {
			if !plainLabelByte(c) {
				return 0, false
			}
		}
		off += n
	}
}

func plainLabelByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// parseECS reads rdata holding exactly one Client Subnet option that RFC
// 7871 calls well formed: family 1 or 2, a source prefix that fits it,
// scope 0, the address in exactly ceil(source/8) bytes with no bit set
// past the prefix.
func (q *fastQuery) parseECS(rdata []byte) bool {
	if len(rdata) < 8 || binary.BigEndian.Uint16(rdata) != optionECS ||
		int(binary.BigEndian.Uint16(rdata[2:])) != len(rdata)-4 {
		return false
	}
	q.family, q.source = binary.BigEndian.Uint16(rdata[4:]), rdata[6]
	scope, addr := rdata[7], rdata[8:]
	maxLen := 32
	if q.family == 2 {
		maxLen = 128
	} else if q.family != 1 {
		return false
	}
	if int(q.source) > maxLen || scope != 0 || len(addr) != (int(q.source)+7)/8 {
		return false
	}
	if rem := q.source % 8; rem != 0 && addr[len(addr)-1]&(0xFF>>rem) != 0 {
		return false // bits set past the prefix
	}
	q.ecs, q.ecsAddr = true, addr
	return true
}

// client is the address to locate: the subnet's, else src (no subnet,
// or a /0, which asks that the address not be used).
func (q *fastQuery) client(src netip.Addr) netip.Addr {
	if !q.ecs || q.source == 0 {
		return src
	}
	var b [16]byte
	copy(b[:], q.ecsAddr)
	if q.family == 1 {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// subnet is the client subnet given, for the rate limiter and metrics
// (invalid without one, or for a /0).
func (q *fastQuery) subnet(client netip.Addr) netip.Prefix {
	if !q.ecs || q.source == 0 {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(client, int(q.source))
}

// appendKey appends the answer cache's key: everything the response
// depends on besides the message ID and the ECS address bytes (which the
// response echoes in place and a hit copies from the query). The client's
// address counts only through where it was located, so every client of
// one place shares an entry.
func (q *fastQuery) appendKey(b []byte, loc locate.Location, bits int) []byte {
	b = binary.BigEndian.AppendUint16(b, q.flags)
	if q.edns {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint16(b, q.udpSize)
		b = binary.BigEndian.AppendUint32(b, q.optTTL)
		if q.ecs {
			b = append(b, 1, byte(q.family), q.source)
		} else {
			b = append(b, 0)
		}
	} else {
		b = append(b, 0)
	}
	// What edgeAnswer reads of the location, then the scope.
	b = append(b, byte(bits))
	if loc.HasPoint {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(loc.Lat))
		b = binary.BigEndian.AppendUint64(b, math.Float64bits(loc.Lon))
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(loc.Region)))
	b = append(b, loc.Region...)
	return append(b, q.question...)
}
