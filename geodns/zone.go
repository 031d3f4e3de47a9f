package geodns

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// zone is one zone's static records, read-only once loaded.
type zone struct {
	origin string // lower-case, fully qualified
	soa    *dns.SOA
	// negSOA is the SOA of negative answers, its TTL the lesser of the
	// SOA's TTL and MINIMUM (RFC 2308).
	negSOA *dns.SOA
	// nodes holds every name that exists in the zone (lower-case, fully
	// qualified), empty non-terminals included (with no records), so
	// NODATA and NXDOMAIN are told apart.
	nodes map[string]*node
}

// node is one name's records by type.
type node struct {
	rrs map[uint16][]dns.RR
}

// zoneSet finds the zone of a name.
type zoneSet struct {
	zones map[string]*zone
}

// find returns the zone that holds name (lower-case, fully qualified):
// the longest zone apex name ends in.
func (zs *zoneSet) find(name string) *zone {
	for {
		if z, ok := zs.zones[name]; ok {
			return z
		}
		i := strings.IndexByte(name, '.')
		if i < 0 || i == len(name)-1 {
			return nil
		}
		name = name[i+1:]
	}
}

// loadZones reads every configured zone and checks it.
func loadZones(cfgs []ZoneConfig) (*zoneSet, error) {
	zs := &zoneSet{zones: map[string]*zone{}}
	var errs []error
	for _, zc := range cfgs {
		z, err := loadZone(zc)
		if err != nil {
			errs = append(errs, fmt.Errorf("zone %s: %w", zc.Name, err))
			continue
		}
		if _, dup := zs.zones[z.origin]; dup {
			errs = append(errs, fmt.Errorf("zone %s: listed twice", zc.Name))
			continue
		}
		zs.zones[z.origin] = z
	}
	return zs, errors.Join(errs...)
}

func loadZone(zc ZoneConfig) (*zone, error) {
	origin := strings.ToLower(dns.Fqdn(zc.Name))
	ttl := zc.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	z := &zone{origin: origin, nodes: map[string]*node{}}
	var errs []error
	if zc.File != "" {
		f, err := os.Open(zc.File)
		if err != nil {
			return nil, fmt.Errorf("open zone file: %w", err)
		}
		errs = append(errs, z.parse(f, zc.File, ttl))
		f.Close()
	}
	if len(zc.Records) > 0 {
		errs = append(errs, z.parse(strings.NewReader(strings.Join(zc.Records, "\n")), "records", ttl))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return z, z.check()
}

// parse adds the records of one zone-file text.
func (z *zone) parse(r io.Reader, file string, ttl time.Duration) error {
	zp := dns.NewZoneParser(r, z.origin, file)
	zp.SetDefaultTTL(uint32(ttl / time.Second))
	zp.SetIncludeAllowed(false) // a config names its files; no file pulls in others
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if err := z.add(rr); err != nil {
			return fmt.Errorf("%s: %s: %w", file, rr.Header().Name, err)
		}
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	return nil
}

func (z *zone) add(rr dns.RR) error {
	h := rr.Header()
	name := strings.ToLower(h.Name)
	h.Name = name
	if !dns.IsSubDomain(z.origin, name) {
		return fmt.Errorf("outside the zone")
	}
	if h.Class != dns.ClassINET {
		return fmt.Errorf("class %s: only IN is served", dns.ClassToString[h.Class])
	}
	switch h.Rrtype {
	case dns.TypeSOA:
		if name != z.origin {
			return fmt.Errorf("an SOA belongs at the apex")
		}
		if z.soa != nil {
			return fmt.Errorf("a second SOA")
		}
		z.soa = rr.(*dns.SOA)
	case dns.TypeNS:
		if name != z.origin {
			return fmt.Errorf("NS below the apex (a delegation) is not served; make it its own zone")
		}
	case dns.TypeDNAME, dns.TypeRRSIG, dns.TypeNSEC, dns.TypeNSEC3, dns.TypeDNSKEY, dns.TypeDS:
		return fmt.Errorf("type %s is not served (no DNSSEC, no DNAME)", dns.TypeToString[h.Rrtype])
	}
	n := z.nodes[name]
	if n == nil {
		n = &node{rrs: map[uint16][]dns.RR{}}
		z.nodes[name] = n
	}
	n.rrs[h.Rrtype] = append(n.rrs[h.Rrtype], rr)
	// Every name between this one and the apex exists (empty non-terminal).
	for p := name; p != z.origin; {
		i := strings.IndexByte(p, '.')
		p = p[i+1:]
		if z.nodes[p] == nil {
			z.nodes[p] = &node{rrs: map[uint16][]dns.RR{}}
		}
	}
	return nil
}

// check enforces what a served zone needs: an SOA, NS at the apex, and
// nothing beside a CNAME.
func (z *zone) check() error {
	var errs []error
	if z.soa == nil {
		errs = append(errs, errors.New("no SOA record at the apex"))
	} else {
		z.negSOA = dns.Copy(z.soa).(*dns.SOA)
		z.negSOA.Hdr.Ttl = min(z.soa.Hdr.Ttl, z.soa.Minttl)
	}
	if apex := z.nodes[z.origin]; apex == nil || len(apex.rrs[dns.TypeNS]) == 0 {
		errs = append(errs, errors.New("no NS records at the apex"))
	}
	for name, n := range z.nodes {
		if c := n.rrs[dns.TypeCNAME]; len(c) > 0 && (len(n.rrs) > 1 || len(c) > 1) {
			errs = append(errs, fmt.Errorf("%s: a CNAME must be the only record of its name", name))
		}
	}
	return errors.Join(errs...)
}
