// Package control is the control plane: the API over the shared state in
// NATS JetStream (embedded by default), and the health checks that decide
// which edges are up. It keeps no state of its own: several control
// processes over one NATS can sit behind a load balancer.
package control

import (
	"time"

	"github.com/selfcdn/cdn/internal/config"
)

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
}

// DefaultConfig returns the defaults every field documents.
func DefaultConfig() Config {
	return Config{
		Listen:  "127.0.0.1:8800",
		DataDir: "cdn-control",
		NATS:    NATSConfig{Listen: "127.0.0.1:4222", Replicas: 1},
		Health: HealthConfig{Interval: 2 * time.Second, Timeout: time.Second, HeartbeatTimeout: 6 * time.Second,
			FailAfter: 2, RecoverAfter: 2},
		MaxBodyBytes: 1 << 20,
		Releases:     ReleasesConfig{MaxBlobBytes: 1 << 30, Retain: 10, GCInterval: 10 * time.Minute, GCGrace: time.Hour},
	}
}

// Validate reports every problem at once.
func (c Config) Validate() error {
	var problems config.Problems
	check := problems.Check
	check(c.Listen != "", "listen must be set")
	check(c.DataDir != "", "data_dir must be set")
	check(len(c.NATS.URLs) > 0 || c.NATS.Listen != "", "nats: give urls of an external cluster, or listen for the embedded server")
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
	return problems.Err()
}
