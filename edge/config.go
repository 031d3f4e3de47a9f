package edge

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/selfcdn/cdn/edge/certs"
	"github.com/selfcdn/cdn/edge/tier"
	"github.com/selfcdn/cdn/internal/config"
	"github.com/selfcdn/cdn/internal/hostclaim"
	sitecfg "github.com/selfcdn/cdn/internal/site"
	"github.com/selfcdn/cdn/origin"
)

// Config is the edge's configuration file (`cdn edge --config edge.yaml`).
type Config struct {
	// Name identifies this edge in Via, Cache-Status and logs. Default "edge".
	Name string `yaml:"name"`
	// Region is the edge's region: GeoDNS answers a client from its nearest region.
	Region string `yaml:"region"`
	// Listen is the address for HTTP/1.1 and h2c. Default ":8080".
	Listen string `yaml:"listen"`
	// AdminListen serves /metrics, /healthz and /readyz. Default "127.0.0.1:9090".
	AdminListen string `yaml:"admin_listen"`
	// TLS serves HTTPS for the sites that have a certificate mode.
	TLS TLSConfig `yaml:"tls"`
	// Cache sizes the cache.
	Cache CacheConfig `yaml:"cache"`
	// Origin tunes the connections to every origin.
	Origin origin.Config `yaml:"origin"`
	// Sites maps hostnames to origins. At least one is required, unless
	// the sites come from the control plane.
	Sites []SiteConfig `yaml:"sites"`
	// Control links the edge to the control plane: its sites come from
	// there (and override Sites), and it registers itself. Nil: standalone.
	Control *ControlConfig `yaml:"control"`
	// AccessLog logs every request as JSON at info level. Default true.
	AccessLog bool `yaml:"access_log"`
	// MaxHeaderBytes bounds a request's header; more gets 431. Default 64KiB.
	MaxHeaderBytes config.Size `yaml:"max_header_bytes"`
	// MaxBodyBytes bounds a request body passed to the origin; more gets
	// 413. Default 64MiB.
	MaxBodyBytes config.Size `yaml:"max_body_bytes"`
	// BodyBuffer is how much of a request body (HTTP/2 and HTTP/3) the
	// edge reads before it contacts the origin: a body up to this size
	// comes whole first, so a client that never sends it holds no origin
	// connection. Default 64KiB.
	BodyBuffer config.Size `yaml:"body_buffer"`
	// BodyTimeout bounds the wait for those first body_buffer bytes (408
	// past it), and a larger body's wait for a streaming slot (503).
	// Default 30s.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// MaxStreamingBodies bounds the requests whose bodies, larger than
	// body_buffer, stream to origins at once, each holding an origin
	// connection while its client sends. Default 64.
	MaxStreamingBodies int `yaml:"max_streaming_bodies"`
	// MaxURIBytes bounds a request target (path and query); more gets
	// 414. Default 16KiB (nginx answers 414 past 8 KiB by default); at
	// most max_header_bytes, which a head must fit in.
	MaxURIBytes config.Size `yaml:"max_uri_bytes"`
	// ReadHeaderTimeout bounds reading a request's whole head: a client
	// sending it a byte at a time is cut off at this time. Also the HTTP/2
	// preface. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes idle client connections. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// WriteTimeout closes a client connection on which one write makes no
	// progress for this long (a client that stopped reading). It bounds
	// each write, not a whole response. Default 60s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// ShutdownTimeout bounds the graceful drain on stop. Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// TCPNotSentLowat caps the unsent bytes each client connection queues
	// in the kernel (Linux TCP_NOTSENT_LOWAT), so large bodies to many
	// clients go out interleaved; 0 keeps the kernel default. Default 32KiB.
	TCPNotSentLowat config.Size `yaml:"tcp_notsent_lowat"`
	// SendFile sends bodies cached on disk to plain HTTP/1.1 clients with
	// sendfile(2), from the page cache without a copy through the edge
	// (HTTPS, HTTP/2 and HTTP/3 always copy). Default off (see the edge
	// README for when it pays).
	SendFile bool `yaml:"sendfile"`
	// HTTP2 bounds what one HTTP/2 client may cost without progress.
	HTTP2 HTTP2Config `yaml:"http2"`
}

// HTTP2Config is the flood accounting of HTTP/2 connections (RFC 9113
// §10.5; see edge/h2/flood.go).
type HTTP2Config struct {
	// FloodBudget is how many frames that cost work without progress
	// (client resets, refused streams, which count ten, empty frames,
	// WINDOW_UPDATEs under 1 KiB, malformed requests, control frames beyond
	// control_frame_rate)
	// a connection may send, net of the responses it got in full, before
	// it is cut off with GOAWAY ENHANCE_YOUR_CALM. Default 1000.
	FloodBudget int `yaml:"flood_budget"`
	// ControlFrameRate is how many SETTINGS, PING and PRIORITY frames a
	// second (and in a burst) a connection may send before each counts
	// against flood_budget. Default 100.
	ControlFrameRate int `yaml:"control_frame_rate"`
}

// ControlConfig is the edge's link to the control plane and what it says
// about itself there.
type ControlConfig struct {
	// NATS is the control plane's NATS URL (several: comma-separated).
	NATS string `yaml:"nats"`
	// Creds is a NATS credentials file, if the cluster wants one.
	Creds string `yaml:"creds"`
	// CA is a PEM file of the CA of the cluster's TLS certificates
	// (tls:// URLs), when the system roots do not cover it.
	CA string `yaml:"ca"`
	// Lat and Lon place the edge (with the edge's region) for GeoDNS.
	Lat float64 `yaml:"lat"`
	Lon float64 `yaml:"lon"`
	// Capacity weighs the edge against its region's others. Default 1.
	Capacity float64 `yaml:"capacity"`
	// PublicURL is the base URL clients reach the edge at. Default
	// http:// plus listen.
	PublicURL string `yaml:"public_url"`
	// PublicAddrs are the IP addresses GeoDNS gives clients for this edge.
	// Default: the host of public_url, when it is an IP address.
	PublicAddrs []string `yaml:"public_addrs"`
	// AdminURL is where control checks the edge's health. Default http://
	// plus admin_listen.
	AdminURL string `yaml:"admin_url"`
	// Heartbeat is how often the edge tells control it is alive. Default 2s.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// MaxPurgeRules bounds the purge rules one site holds (URLs, prefixes
	// and tags purged since its last whole-site purge, ~100 bytes each);
	// past it the edge purges the site whole instead. Default 100000.
	MaxPurgeRules int `yaml:"max_purge_rules"`
	// PurgeCatchUp is how long after start the edge stays not ready
	// (/readyz 503, so control and GeoDNS send it no clients) while it
	// applies the purges it missed. Past it, the edge turns ready anyway:
	// NATS may be down, and stale is better than nothing. Default 10s.
	PurgeCatchUp time.Duration `yaml:"purge_catch_up"`
	// PinnedMax bounds the disk space of pushed releases (under
	// cache.dir/pinned); a release that would not fit is not switched to,
	// and the edge reports why. 0: only the disk bounds it.
	PinnedMax config.Size `yaml:"pinned_max"`
	// ReleaseFetchers bounds pushed blobs fetched at once. Default 8.
	ReleaseFetchers int `yaml:"release_fetchers"`
	// Tier is the edge's part in its region's cache tier and the
	// shield (edge/tier): misses ask the key's home edge first.
	Tier tier.Config `yaml:"tier"`
}

func (c *ControlConfig) validate() error {
	var errs []error
	if c.NATS == "" {
		errs = append(errs, errors.New("nats: a NATS URL is required"))
	}
	if c.Lat < -90 || c.Lat > 90 || c.Lon < -180 || c.Lon > 180 {
		errs = append(errs, fmt.Errorf("lat/lon: out of range (%g, %g)", c.Lat, c.Lon))
	}
	if c.Capacity < 0 {
		errs = append(errs, fmt.Errorf("capacity: must be >= 0, got %g", c.Capacity))
	}
	if c.PinnedMax < 0 || c.ReleaseFetchers < 0 {
		errs = append(errs, errors.New("pinned_max and release_fetchers: must be >= 0"))
	}
	if c.PurgeCatchUp < 0 {
		errs = append(errs, fmt.Errorf("purge_catch_up: must be >= 0, got %s", c.PurgeCatchUp))
	}
	if c.MaxPurgeRules < 0 {
		errs = append(errs, fmt.Errorf("max_purge_rules: must be >= 0, got %d", c.MaxPurgeRules))
	}
	if c.Heartbeat < 0 {
		errs = append(errs, fmt.Errorf("heartbeat: must be >= 0, got %s", c.Heartbeat))
	}
	for _, a := range c.PublicAddrs {
		if _, err := netip.ParseAddr(a); err != nil {
			errs = append(errs, fmt.Errorf("public_addrs: %q is not an IP address", a))
		}
	}
	if u := c.Tier.PeerURL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		errs = append(errs, fmt.Errorf("tier.peer_url: want an http or https base URL, got %q", u))
	}
	if err := c.Tier.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// TLSConfig is the edge's HTTPS listener and where its certificates
// come from.
type TLSConfig struct {
	// Listen is the HTTPS address: HTTP/1.1 and HTTP/2 (ALPN) over TCP,
	// HTTP/3 over UDP on the same port. Empty: no HTTPS.
	Listen string `yaml:"listen"`
	// HTTP3 serves HTTP/3 and advertises it (Alt-Svc). Default true.
	HTTP3 bool `yaml:"http3"`
	// Storage holds certificates, keys and the ACME account. Default
	// cache.dir/certs. An edge linked to control keeps its ACME
	// certificates, account and locks in the network's shared bucket
	// instead (cdn_certs, internal/certstore), so one order serves every
	// edge; Storage then holds dev and file certificates only.
	Storage string `yaml:"storage"`
	// DevCA is the development CA's directory, for sites with tls: dev
	// (made on first use). Default storage/dev-ca.
	DevCA string `yaml:"dev_ca"`
	// ACME is the account sites with tls: acme use.
	ACME ACMEConfig `yaml:"acme"`
	// HandshakeTimeout bounds a TLS or QUIC handshake. Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxStreams bounds the concurrent requests on one HTTP/2 or HTTP/3
	// connection. Default 100.
	MaxStreams int `yaml:"max_streams"`
}

// ACMEConfig is an ACME account.
type ACMEConfig struct {
	// CA is the directory URL. Default Let's Encrypt.
	CA string `yaml:"ca"`
	// Email is the account's contact; required for ACME sites (the CA
	// warns there before a certificate expires).
	Email string `yaml:"email"`
	// CARoot is a PEM file of roots for a private CA's API.
	CARoot string `yaml:"ca_root"`
	// HTTPPort and TLSPort are the ports the CA's http-01 and
	// tls-alpn-01 challenges arrive on, when a forward from 80 and 443
	// sits in front. Default: none (80, 443).
	HTTPPort int `yaml:"http_port"`
	TLSPort  int `yaml:"tls_port"`
}

func (t TLSConfig) validate(cacheDir string, sites []SiteConfig) error {
	var errs []error
	if t.Listen == "" {
		for _, s := range sites {
			if s.TLS != certs.None {
				errs = append(errs, fmt.Errorf("sites (%s): tls %q needs tls.listen", s.Name, s.TLS))
			}
		}
		return errors.Join(errs...)
	}
	if t.Storage == "" && cacheDir == "" {
		errs = append(errs, errors.New("tls.storage: required when cache.dir is not set"))
	}
	if t.HandshakeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("tls.handshake_timeout: must be > 0, got %s", t.HandshakeTimeout))
	}
	if t.MaxStreams <= 0 {
		errs = append(errs, fmt.Errorf("tls.max_streams: must be > 0, got %d", t.MaxStreams))
	}
	for _, s := range sites {
		if s.TLS == certs.ACME && t.ACME.Email == "" {
			errs = append(errs, fmt.Errorf("tls.acme.email: required for the ACME site %s", s.Name))
			break
		}
	}
	if t.ACME.HTTPPort < 0 || t.ACME.HTTPPort > 65535 || t.ACME.TLSPort < 0 || t.ACME.TLSPort > 65535 {
		errs = append(errs, errors.New("tls.acme: http_port and tls_port must be ports"))
	}
	return errors.Join(errs...)
}

// storageDir is where certificates are kept.
func (c Config) storageDir() string {
	if c.TLS.Storage != "" {
		return c.TLS.Storage
	}
	return filepath.Join(c.Cache.Dir, "certs")
}

// devCADir is the development CA's directory.
func (c Config) devCADir() string {
	if c.TLS.DevCA != "" {
		return c.TLS.DevCA
	}
	return filepath.Join(c.storageDir(), "dev-ca")
}

// CacheConfig sizes the cache.
type CacheConfig struct {
	// Memory bounds the memory tier. Default 256MiB.
	Memory config.Size `yaml:"memory"`
	// MaxObject is the largest body cached in memory; larger ones stream
	// through a temporary file. Default 16MiB.
	MaxObject config.Size `yaml:"max_object"`
	// Dir holds the disk tier and temporary files of large responses in
	// flight. Empty: no disk tier, temporary files in the system temp dir.
	Dir string `yaml:"dir"`
	// Disk bounds the disk tier's bytes under Dir; 0 turns the tier off.
	// Objects evicted from memory are served from disk, and the disk cache
	// survives restarts. Default 10GiB.
	Disk config.Size `yaml:"disk"`
	// DiskObjects bounds the disk tier's object count; 0 means no bound.
	DiskObjects int `yaml:"disk_objects"`
	// MaxDiskObject is the largest body kept on disk. Default: disk / 8.
	MaxDiskObject config.Size `yaml:"max_disk_object"`
	// MaxVariants bounds the Vary variants kept per URL. Default 32.
	MaxVariants int `yaml:"max_variants"`
	// HitForMissTTL is how long a URL whose response could not be shared
	// skips request coalescing. Default 30s.
	HitForMissTTL time.Duration `yaml:"hit_for_miss_ttl"`
}

// SiteConfig is one site: the hostnames it answers, its origin and how
// it is cached. The one site type (internal/site), so an edge's YAML and
// control's API accept the same sites.
type SiteConfig = sitecfg.Site

// TTLConfig and HSTSConfig are a site's parts.
type (
	TTLConfig  = sitecfg.TTL
	HSTSConfig = sitecfg.HSTS
)

// DefaultConfig returns the defaults every field documents.
func DefaultConfig() Config {
	return Config{
		Name:        "edge",
		Listen:      ":8080",
		AdminListen: "127.0.0.1:9090",
		Cache: CacheConfig{
			Memory:        256 << 20,
			MaxObject:     16 << 20,
			Disk:          10 << 30,
			MaxVariants:   32,
			HitForMissTTL: 30 * time.Second,
		},
		AccessLog:          true,
		MaxHeaderBytes:     64 << 10,
		MaxBodyBytes:       64 << 20,
		BodyBuffer:         64 << 10,
		BodyTimeout:        30 * time.Second,
		MaxStreamingBodies: 64,
		MaxURIBytes:        16 << 10,
		ReadHeaderTimeout:  10 * time.Second,
		IdleTimeout:        120 * time.Second,
		WriteTimeout:       60 * time.Second,
		ShutdownTimeout:    10 * time.Second,
		TCPNotSentLowat:    32 << 10,
		TLS:                TLSConfig{HTTP3: true, HandshakeTimeout: 10 * time.Second, MaxStreams: 100},
		HTTP2:              HTTP2Config{FloodBudget: 1000, ControlFrameRate: 100},
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var problems config.Problems
	check := problems.Check
	check(c.Name != "" && !strings.ContainsAny(c.Name, " ,;\"\r\n"), "name must be a non-empty token, got %q", c.Name)
	check(c.Listen != "", "listen must be set")
	check(c.Cache.Memory > 0, "cache.memory must be > 0, got %d", c.Cache.Memory)
	check(c.Cache.MaxObject > 0, "cache.max_object must be > 0, got %d", c.Cache.MaxObject)
	check(c.Cache.Disk >= 0, "cache.disk must be >= 0, got %d", c.Cache.Disk)
	check(c.Cache.DiskObjects >= 0, "cache.disk_objects must be >= 0, got %d", c.Cache.DiskObjects)
	check(c.Cache.MaxDiskObject >= 0, "cache.max_disk_object must be >= 0, got %d", c.Cache.MaxDiskObject)
	check(c.Cache.MaxVariants > 0, "cache.max_variants must be > 0, got %d", c.Cache.MaxVariants)
	check(c.Cache.HitForMissTTL >= 0, "cache.hit_for_miss_ttl must be >= 0, got %s", c.Cache.HitForMissTTL)
	check(c.MaxHeaderBytes > 0, "max_header_bytes must be > 0, got %d", c.MaxHeaderBytes)
	check(c.MaxBodyBytes > 0, "max_body_bytes must be > 0, got %d", c.MaxBodyBytes)
	check(c.BodyBuffer >= 0, "body_buffer must be >= 0, got %d", c.BodyBuffer)
	check(c.BodyTimeout > 0, "body_timeout must be > 0, got %s", c.BodyTimeout)
	check(c.MaxStreamingBodies > 0, "max_streaming_bodies must be > 0, got %d", c.MaxStreamingBodies)
	check(c.HTTP2.FloodBudget > 0, "http2.flood_budget must be > 0, got %d", c.HTTP2.FloodBudget)
	check(c.HTTP2.ControlFrameRate > 0, "http2.control_frame_rate must be > 0, got %d", c.HTTP2.ControlFrameRate)
	check(c.MaxURIBytes >= 1<<10, "max_uri_bytes must be at least 1KiB, got %d", c.MaxURIBytes)
	check(c.ReadHeaderTimeout > 0, "read_header_timeout must be > 0, got %s", c.ReadHeaderTimeout)
	check(c.IdleTimeout > 0, "idle_timeout must be > 0, got %s", c.IdleTimeout)
	check(c.WriteTimeout > 0, "write_timeout must be > 0, got %s", c.WriteTimeout)
	check(c.TCPNotSentLowat >= 0, "tcp_notsent_lowat must be >= 0, got %d", c.TCPNotSentLowat)
	check(c.ShutdownTimeout > 0, "shutdown_timeout must be > 0, got %s", c.ShutdownTimeout)
	if err := c.Origin.Validate(); err != nil {
		problems.Add(fmt.Errorf("origin: %w", err))
	}
	if err := c.TLS.validate(c.Cache.Dir, c.Sites); err != nil {
		problems.Add(err)
	}
	check(len(c.Sites) > 0 || c.Control != nil, "sites: at least one site is required (or a control link)")
	if c.Control != nil {
		check(c.Region != "", "region: required with a control link (GeoDNS places the edge by it)")
		if err := c.Control.validate(); err != nil {
			problems.Add(fmt.Errorf("control: %w", err))
		}
	}
	names := map[string]bool{}
	hosts := hostclaim.Claims{} // the rule control's API applies too
	for i, s := range c.Sites {
		if err := s.Validate(); err != nil {
			problems.Add(fmt.Errorf("sites[%d] (%s): %w", i, s.Name, err))
		}
		check(!names[s.Name], "sites[%d]: name %q used twice", i, s.Name)
		names[s.Name] = true
		for _, h := range s.Hosts {
			if prev, ok := hosts.Claim(s.Name, h); !ok {
				problems.Add(fmt.Errorf("sites[%d] (%s): host %q already belongs to site %q", i, s.Name, hostclaim.Key(h), prev))
			}
		}
	}
	return problems.Err()
}
