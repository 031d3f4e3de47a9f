// Package locatetest builds small MaxMind-format City databases for tests,
// with github.com/maxmind/mmdbwriter: documentation address ranges placed
// in a few cities, so answers are known in advance.
package locatetest

import (
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Place is one network's record.
type Place struct {
	Network   string // CIDR
	Continent string
	Country   string
	City      string
	Lat, Lon  float64
}

// Places are the networks of testdata/test-city.mmdb: loopback in North
// America and the RFC 5737 / RFC 3849 documentation ranges one per
// continent (the same map as the peers' benchmark database).
var Places = []Place{
	{"127.0.0.0/8", "NA", "US", "Ashburn", 39.04, -77.49},
	{"::1/128", "NA", "US", "Ashburn", 39.04, -77.49},
	{"192.0.2.0/24", "EU", "DE", "Frankfurt", 50.11, 8.68},
	{"198.51.100.0/24", "AS", "JP", "Tokyo", 35.68, 139.69},
	{"203.0.113.0/24", "SA", "BR", "Sao Paulo", -23.55, -46.63},
	{"2001:db8::/32", "OC", "AU", "Sydney", -33.87, 151.21},
}

// WriteCity writes a GeoIP2-City-shaped database holding places. The
// output is the same bytes for the same places.
func WriteCity(w io.Writer, places []Place) error {
	db, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "GeoIP2-City",
		Description:             map[string]string{"en": "selfcdn geodns test database"},
		Languages:               []string{"en"},
		IncludeReservedNetworks: true, // loopback and documentation ranges are reserved
		RecordSize:              28,
		BuildEpoch:              1700000000,
	})
	if err != nil {
		return err
	}
	for _, p := range places {
		prefix, err := netip.ParsePrefix(p.Network)
		if err != nil {
			return fmt.Errorf("place %s: %w", p.Network, err)
		}
		rec := mmdbtype.Map{
			"continent": mmdbtype.Map{"code": mmdbtype.String(p.Continent)},
			"country":   mmdbtype.Map{"iso_code": mmdbtype.String(p.Country)},
			"city":      mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(p.City)}},
			"location": mmdbtype.Map{
				"latitude":        mmdbtype.Float64(p.Lat),
				"longitude":       mmdbtype.Float64(p.Lon),
				"accuracy_radius": mmdbtype.Uint16(50),
			},
		}
		n := &net.IPNet{IP: prefix.Addr().AsSlice(), Mask: net.CIDRMask(prefix.Bits(), prefix.Addr().BitLen())}
		if err := db.Insert(n, rec); err != nil {
			return fmt.Errorf("place %s: %w", p.Network, err)
		}
	}
	_, err = db.WriteTo(w)
	return err
}
