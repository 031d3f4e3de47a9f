package geodns

import (
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/selfcdn/cdn/internal/config"
)

// Config is geodns's configuration.
type Config struct {
	// Listen is the DNS address, served over UDP and TCP. Default
	// 127.0.0.1:8553 (port 53 wants privileges; give it in production).
	Listen string `yaml:"listen"`
	// AdminListen serves /metrics and /readyz; empty turns it off.
	// Default 127.0.0.1:9153.
	AdminListen string `yaml:"admin_listen"`
	// Zones are the zones served.
	Zones []ZoneConfig `yaml:"zones"`
	// Hosts are hostnames answered with edges beyond those of control's
	// sites (the only ones, when running without control). "*.example.com"
	// covers one label.
	Hosts []string `yaml:"hosts"`
	// Answer shapes edge answers.
	Answer AnswerConfig `yaml:"answer"`
	// Geo places clients.
	Geo GeoConfig `yaml:"geo"`
	// Control is the NATS link to the edge registry, health and sites.
	// Without it, Edges lists the edges (always taken as healthy unless
	// draining).
	Control *ControlConfig `yaml:"control"`
	// Edges are the edges of a standalone geodns (no control).
	Edges []EdgeConfig `yaml:"edges"`
	// RateLimit limits responses to floods from one client network.
	RateLimit RateLimitConfig `yaml:"rate_limit"`
	// MaxUDPSize bounds UDP responses whatever size a client offers:
	// 1232 (the DNS flag day value) avoids IP fragmentation. Default 1232.
	MaxUDPSize int `yaml:"max_udp_size"`
	// QueryLogSample logs one query in this many (0: none). Default 0.
	QueryLogSample int `yaml:"query_log_sample"`
	// TCPIdleTimeout closes idle TCP connections. Default 10s.
	TCPIdleTimeout time.Duration `yaml:"tcp_idle_timeout"`
}

// ZoneConfig is one zone: records in zone-file syntax, from a file,
// inline, or both. It needs an SOA and NS records at its apex.
type ZoneConfig struct {
	// Name is the zone's apex ("cdn.example.com").
	Name string `yaml:"name"`
	// File is a zone file (RFC 1035 master format) relative to the
	// working directory; $ORIGIN defaults to Name.
	File string `yaml:"file"`
	// Records are zone-file lines ("www 300 IN CNAME cdn", "@ TXT \"v\"");
	// names are relative to Name, the default TTL is TTL.
	Records []string `yaml:"records"`
	// TTL is the default TTL of Records. Default 3600s.
	TTL time.Duration `yaml:"ttl"`
}

// AnswerConfig shapes the edge answers.
type AnswerConfig struct {
	// Records is how many edges (A or AAAA records) an answer holds, at
	// most. Default 2.
	Records int `yaml:"records"`
	// TTL of edge answers: short, so a down edge leaves resolvers' caches
	// soon. Default 30s.
	TTL time.Duration `yaml:"ttl"`
	// CacheBytes bounds the memory of packed UDP responses kept for
	// reuse (emptied whenever edges, health or hosts change; entries
	// evicted at random when full). 0 turns the cache off. Default 16 MiB.
	CacheBytes config.Size `yaml:"cache_bytes"`
}

// GeoConfig places clients.
type GeoConfig struct {
	// MMDB is a MaxMind-format City database (GeoLite2-City, DB-IP City
	// Lite); re-read when the file changes. Empty: networks only.
	MMDB string `yaml:"mmdb"`
	// Networks map client networks to an edge region, before the database
	// (private networks, tests, overrides).
	Networks []NetworkConfig `yaml:"networks"`
}

// NetworkConfig sends a client network to a region.
type NetworkConfig struct {
	CIDR   string `yaml:"cidr"`
	Region string `yaml:"region"`
}

// ControlConfig is the NATS link.
type ControlConfig struct {
	// NATS is the control plane's NATS URL (several: comma-separated).
	NATS string `yaml:"nats"`
	// Creds is a NATS credentials file; CA a PEM file for tls:// URLs.
	Creds string `yaml:"creds"`
	CA    string `yaml:"ca"`
}

// EdgeConfig is one edge of a standalone geodns.
type EdgeConfig struct {
	Name   string  `yaml:"name"`
	Region string  `yaml:"region"`
	Lat    float64 `yaml:"lat"`
	Lon    float64 `yaml:"lon"`
	// Addrs are the edge's public IPv4 and IPv6 addresses.
	Addrs []string `yaml:"addrs"`
	// Capacity weighs the edge against its region's others. Default 1.
	Capacity float64 `yaml:"capacity"`
	// Draining takes the edge out of answers.
	Draining bool `yaml:"draining"`
}

// RateLimitConfig is response rate limiting: each client network (an IPv4
// /24, an IPv6 /56) gets so many responses per second for one name and
// client subnet (for NXDOMAIN, per zone, so random names count together). Over the limit,
// responses are dropped, and every Slip-th one is sent truncated instead
// (empty, TC set), so a real client behind a spoofed flood retries over
// TCP, which is never limited.
type RateLimitConfig struct {
	// ResponsesPerSecond per network and name; 0 turns limiting off.
	// Default 50.
	ResponsesPerSecond float64 `yaml:"responses_per_second"`
	// Burst is how many may come at once. Default 2 × ResponsesPerSecond.
	Burst int `yaml:"burst"`
	// Slip: one in Slip limited responses goes out truncated; 0 drops all.
	// Default 2.
	Slip int `yaml:"slip"`
	// IPv4Prefix and IPv6Prefix size a client network. Default 24, 56.
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
	// Exempt networks are never limited (monitoring, your own resolvers).
	Exempt []string `yaml:"exempt"`
}

// DefaultConfig returns the defaults every field documents.
func DefaultConfig() Config {
	return Config{
		Listen:         "127.0.0.1:8553",
		AdminListen:    "127.0.0.1:9153",
		Answer:         AnswerConfig{Records: 2, TTL: 30 * time.Second, CacheBytes: 16 << 20},
		RateLimit:      RateLimitConfig{ResponsesPerSecond: 50, Slip: 2, IPv4Prefix: 24, IPv6Prefix: 56},
		MaxUDPSize:     1232,
		TCPIdleTimeout: 10 * time.Second,
	}
}

// Validate reports every problem at once. Zone contents are checked when
// the server loads them (New), with the file and line.
func (c Config) Validate() error {
	var problems config.Problems
	check := problems.Check
	check(c.Listen != "", "listen must be set")
	check(len(c.Zones) > 0, "zones: at least one zone is needed")
	for i, z := range c.Zones {
		_, ok := dns.IsDomainName(z.Name)
		check(z.Name != "" && ok, "zones[%d].name: %q is not a domain name", i, z.Name)
		check(z.File != "" || len(z.Records) > 0, "zones[%d] (%s): give a file or records", i, z.Name)
		check(z.TTL >= 0, "zones[%d].ttl must be >= 0", i)
	}
	for i, h := range c.Hosts {
		check(validHost(h), "hosts[%d]: %q is not a hostname or *.hostname", i, h)
	}
	check(c.Answer.Records >= 1 && c.Answer.Records <= 64, "answer.records must be 1-64, got %d", c.Answer.Records)
	check(c.Answer.TTL >= time.Second, "answer.ttl must be at least 1s, got %s", c.Answer.TTL)
	check(c.Answer.CacheBytes >= 0, "answer.cache_bytes must be >= 0, got %d", c.Answer.CacheBytes)
	for i, n := range c.Geo.Networks {
		_, err := netip.ParsePrefix(n.CIDR)
		check(err == nil, "geo.networks[%d].cidr: %q is not a CIDR prefix", i, n.CIDR)
		check(n.Region != "", "geo.networks[%d].region must be set", i)
	}
	if c.Control != nil {
		check(c.Control.NATS != "", "control.nats must be set")
		check(len(c.Edges) == 0, "edges: list edges only without control (control's registry has them)")
	} else {
		check(len(c.Edges) > 0, "edges: without control, list the edges")
	}
	names := map[string]bool{}
	for i, e := range c.Edges {
		check(e.Name != "" && !names[e.Name], "edges[%d].name must be set and unique, got %q", i, e.Name)
		names[e.Name] = true
		check(e.Region != "", "edges[%d] (%s).region must be set", i, e.Name)
		check(e.Lat >= -90 && e.Lat <= 90 && e.Lon >= -180 && e.Lon <= 180, "edges[%d] (%s): lat/lon out of range", i, e.Name)
		check(len(e.Addrs) > 0, "edges[%d] (%s).addrs: at least one address", i, e.Name)
		for _, a := range e.Addrs {
			_, err := netip.ParseAddr(a)
			check(err == nil, "edges[%d] (%s).addrs: %q is not an IP address", i, e.Name, a)
		}
		check(e.Capacity >= 0, "edges[%d] (%s).capacity must be >= 0", i, e.Name)
	}
	rl := c.RateLimit
	check(rl.ResponsesPerSecond >= 0, "rate_limit.responses_per_second must be >= 0")
	check(rl.Burst >= 0 && rl.Slip >= 0, "rate_limit.burst and slip must be >= 0")
	check(rl.IPv4Prefix >= 8 && rl.IPv4Prefix <= 32, "rate_limit.ipv4_prefix must be 8-32, got %d", rl.IPv4Prefix)
	check(rl.IPv6Prefix >= 16 && rl.IPv6Prefix <= 128, "rate_limit.ipv6_prefix must be 16-128, got %d", rl.IPv6Prefix)
	for i, p := range rl.Exempt {
		_, err := netip.ParsePrefix(p)
		check(err == nil, "rate_limit.exempt[%d]: %q is not a CIDR prefix", i, p)
	}
	check(c.MaxUDPSize >= 512 && c.MaxUDPSize <= 65535, "max_udp_size must be 512-65535, got %d", c.MaxUDPSize)
	check(c.QueryLogSample >= 0, "query_log_sample must be >= 0")
	check(c.TCPIdleTimeout > 0, "tcp_idle_timeout must be > 0")
	return problems.Err()
}

// validHost accepts a hostname or a one-label wildcard of one.
func validHost(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	_, ok := dns.IsDomainName(h)
	return h != "" && ok && !strings.Contains(h, "*")
}
