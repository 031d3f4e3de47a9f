package control

import (
	"net"
	"net/netip"
	"time"

	"github.com/selfcdn/cdn/control/dashboard"
	"github.com/selfcdn/cdn/internal/config"
	"github.com/selfcdn/cdn/internal/natsembed"
)

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Config is control's configuration.
type Config struct {
	// Listen is the HTTP API address. Default 127.0.0.1:8800.
	Listen string `yaml:"listen"`
	// DataDir holds the embedded NATS server's data and the bootstrap
	// admin token file. Default ./cdn-control.
	DataDir string `yaml:"data_dir"`
	// NATS is the distributed engine.
	NATS NATSConfig `yaml:"nats"`
	// Health tunes the edge health checks.
	Health HealthConfig `yaml:"health"`
	// MaxBodyBytes bounds API request bodies. Default 1MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// Purges bounds the purge log.
	Purges PurgeConfig `yaml:"purges"`
	// Releases bounds pushed releases.
	Releases ReleasesConfig `yaml:"releases"`
	// Push bounds what one site's pushes may store.
	Push PushConfig `yaml:"push"`
	// Limits bound how fast one API token may write.
	Limits LimitsConfig `yaml:"limits"`
	// Dashboard tunes the operator pages under /dashboard/.
	Dashboard dashboard.Config `yaml:"dashboard"`
}

// PushConfig bounds pushed sites.
type PushConfig struct {
	// MaxSiteBytes bounds the bytes of blobs one release of a site
	// references (each blob counted once), and so any one blob; a bigger
	// release is refused with 413. 0: no bound. Default 10GiB.
	MaxSiteBytes int64 `yaml:"max_site_bytes"`
}

// LimitsConfig is the per-token write rate of the API: a token bucket per
// token, refilled at WriteRate and holding WriteBurst writes. Writes are
// POST, PUT, PATCH and DELETE under /v1, blob uploads aside (bytes bound
// those); past the rate control answers 429 with Retry-After.
type LimitsConfig struct {
	// WriteRate is the writes per second one token may sustain; 0
	// disables the limit. Default 10.
	WriteRate float64 `yaml:"write_rate"`
	// WriteBurst is how many writes a token may make at once. Default 50.
	WriteBurst int `yaml:"write_burst"`
}

// ReleasesConfig bounds pushed content and says when it is collected.
type ReleasesConfig struct {
	// MaxBlobBytes bounds one pushed file. Default 1GiB.
	MaxBlobBytes int64 `yaml:"max_blob_bytes"`
	// Retain is how many releases of a site are kept besides the live one
	// (rollback targets). Default 10.
	Retain int `yaml:"retain"`
	// GCInterval is how often old releases and unreferenced blobs are
	// collected. Default 10m.
	GCInterval time.Duration `yaml:"gc_interval"`
	// GCGrace keeps an unreferenced blob at least this long after it was
	// stored, and every unreferenced blob while a push started within it,
	// so a push in progress does not lose what it uploaded. Default 1h.
	GCGrace time.Duration `yaml:"gc_grace"`
}

// PurgeConfig bounds the purge log (a JetStream stream). An edge away for
// longer than the log reaches back purges its sites whole on return.
type PurgeConfig struct {
	// Retention is how long purges are kept. Default 720h (30 days).
	Retention time.Duration `yaml:"retention"`
	// MaxPurges is how many are kept. Default 1000000.
	MaxPurges int64 `yaml:"max_purges"`
	// IdempotencyWindow is how long an Idempotency-Key is remembered: a
	// retry within it returns the first call's version. Default 24h.
	IdempotencyWindow time.Duration `yaml:"idempotency_window"`
	// MaxBytes bounds the log's bytes; past it the oldest purges are
	// dropped (edges that missed them purge their sites whole). Default
	// 1GiB.
	MaxBytes int64 `yaml:"max_bytes"`
}

// NATSConfig says where JetStream is.
type NATSConfig struct {
	// URLs of an external NATS cluster; empty runs an embedded server.
	URLs []string `yaml:"urls"`
	// Creds is a NATS credentials file for the external cluster.
	Creds string `yaml:"creds"`
	// CA is a PEM file of the CA that signed the cluster's TLS
	// certificates (tls:// URLs), when the system roots do not.
	CA string `yaml:"ca"`
	// Listen is the embedded server's client address (edges connect to
	// it). Default 127.0.0.1:4222.
	Listen string `yaml:"listen"`
	// Replicas of every bucket: 1 on one server, 3 on a 3-node cluster.
	// Default 1.
	Replicas int `yaml:"replicas"`
	// TLS makes the embedded server's clients connect over TLS (cert and
	// key; ca is what clients verify it with). Required when Listen is
	// not a loopback address, unless Insecure.
	TLS natsembed.TLSFiles `yaml:"tls"`
	// Insecure allows the embedded server on a non-loopback address
	// without TLS: credentials and state then cross the network in
	// clear text.
	Insecure bool `yaml:"insecure"`
	// SystemCreds is a system-account user's credentials file on an
	// external cluster, with which control sends revocations (the
	// embedded server's are minted into the data dir).
	SystemCreds string `yaml:"system_creds"`
}

// HealthConfig tunes how control judges edges.
type HealthConfig struct {
	// Interval between active checks of every edge. Default 2s.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one check. Default 1s.
	Timeout time.Duration `yaml:"timeout"`
	// HeartbeatTimeout marks an edge down when its last heartbeat is
	// older. Default 6s.
	HeartbeatTimeout time.Duration `yaml:"heartbeat_timeout"`
	// FailAfter consecutive failed checks mark an edge down, and
	// RecoverAfter good ones mark it up again (hysteresis). Default 2, 2.
	FailAfter    int `yaml:"fail_after"`
	RecoverAfter int `yaml:"recover_after"`
	// PurgeLag marks an edge down, and keeps it down, while it has not
	// applied a purge the log held this long ago: it would serve what was
	// purged (a region back from a cut link catching up). Negative: off.
	// Default 5s.
	PurgeLag time.Duration `yaml:"purge_lag"`
}

// DefaultConfig returns the defaults every field documents.
func DefaultConfig() Config {
	return Config{
		Listen:  "127.0.0.1:8800",
		DataDir: "cdn-control",
		NATS:    NATSConfig{Listen: "127.0.0.1:4222", Replicas: 1},
		Health: HealthConfig{Interval: 2 * time.Second, Timeout: time.Second, HeartbeatTimeout: 6 * time.Second,
			FailAfter: 2, RecoverAfter: 2, PurgeLag: 5 * time.Second},
		MaxBodyBytes: 1 << 20,
		Releases:     ReleasesConfig{MaxBlobBytes: 1 << 30, Retain: 10, GCInterval: 10 * time.Minute, GCGrace: time.Hour},
		Purges:       PurgeConfig{MaxBytes: 1 << 30},
		Push:         PushConfig{MaxSiteBytes: 10 << 30},
		Limits:       LimitsConfig{WriteRate: 10, WriteBurst: 50},
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var problems config.Problems
	check := problems.Check
	check(c.Listen != "", "listen must be set")
	check(c.DataDir != "", "data_dir must be set")
	check(len(c.NATS.URLs) > 0 || c.NATS.Listen != "", "nats: give urls of an external cluster, or listen for the embedded server")
	if len(c.NATS.URLs) == 0 && c.NATS.Listen != "" {
		check(c.NATS.TLS.Enabled() || c.NATS.Insecure || loopback(c.NATS.Listen),
			"nats.listen %s is reachable from the network: set nats.tls (cert, key) or, knowingly, nats.insecure: true", c.NATS.Listen)
	}
	check(c.NATS.TLS.Enabled() == (c.NATS.TLS.Cert != "" && c.NATS.TLS.Key != ""), "nats.tls needs both cert and key")
	check(c.NATS.Replicas >= 1 && c.NATS.Replicas <= 5, "nats.replicas must be 1-5, got %d", c.NATS.Replicas)
	check(c.Health.Interval > 0, "health.interval must be > 0, got %s", c.Health.Interval)
	check(c.Health.Timeout > 0, "health.timeout must be > 0, got %s", c.Health.Timeout)
	check(c.Health.HeartbeatTimeout > 0, "health.heartbeat_timeout must be > 0, got %s", c.Health.HeartbeatTimeout)
	check(c.Health.FailAfter >= 1, "health.fail_after must be >= 1, got %d", c.Health.FailAfter)
	check(c.Health.RecoverAfter >= 1, "health.recover_after must be >= 1, got %d", c.Health.RecoverAfter)
	check(c.MaxBodyBytes > 0, "max_body_bytes must be > 0, got %d", c.MaxBodyBytes)
	check(c.Purges.Retention >= 0 && c.Purges.MaxPurges >= 0 && c.Purges.IdempotencyWindow >= 0,
		"purges: retention, max_purges and idempotency_window must be >= 0 (0: the default)")
	check(c.Purges.IdempotencyWindow == 0 || c.Purges.IdempotencyWindow >= 100*time.Millisecond,
		"purges.idempotency_window must be at least 100ms, got %s", c.Purges.IdempotencyWindow)
	check(c.Releases.MaxBlobBytes > 0, "releases.max_blob_bytes must be > 0, got %d", c.Releases.MaxBlobBytes)
	check(c.Releases.Retain >= 0, "releases.retain must be >= 0, got %d", c.Releases.Retain)
	check(c.Releases.GCInterval > 0, "releases.gc_interval must be > 0, got %s", c.Releases.GCInterval)
	check(c.Releases.GCGrace >= 0, "releases.gc_grace must be >= 0, got %s", c.Releases.GCGrace)
	// A cap of a few purges would drop purges edges have not applied yet,
	// making every edge purge its sites whole.
	check(c.Purges.MaxBytes >= 1<<20, "purges.max_bytes must be at least 1MiB, got %d", c.Purges.MaxBytes)
	check(c.Push.MaxSiteBytes >= 0, "push.max_site_bytes must be >= 0 (0: no bound), got %d", c.Push.MaxSiteBytes)
	check(c.Dashboard.SessionTTL >= 0 && c.Dashboard.LinkTTL >= 0, "dashboard: session_ttl and link_ttl must be >= 0 (0: the default)")
	check(c.Limits.WriteRate >= 0, "limits.write_rate must be >= 0 (0: no limit), got %g", c.Limits.WriteRate)
	check(c.Limits.WriteRate == 0 || c.Limits.WriteBurst >= 1, "limits.write_burst must be >= 1 with a write_rate, got %d", c.Limits.WriteBurst)
	return problems.Err()
}
