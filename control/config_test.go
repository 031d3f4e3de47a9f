package control

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/selfcdn/cdn/internal/config"
	"github.com/selfcdn/cdn/internal/natsembed"
)

// TestNATSExposureNeedsTLS: an embedded NATS reachable from the network
// must use TLS, unless the operator says insecure knowingly.
func TestNATSExposureNeedsTLS(t *testing.T) {
	tls := natsembed.TLSFiles{Cert: "c.pem", Key: "k.pem"}
	tests := []struct {
		name    string
		mutate  func(*NATSConfig)
		wantErr string
	}{
		{name: "loopback, no TLS", mutate: func(n *NATSConfig) { n.Listen = "127.0.0.1:4222" }},
		{name: "localhost, no TLS", mutate: func(n *NATSConfig) { n.Listen = "localhost:4222" }},
		{name: "IPv6 loopback", mutate: func(n *NATSConfig) { n.Listen = "[::1]:4222" }},
		{name: "all addresses, no TLS", mutate: func(n *NATSConfig) { n.Listen = "0.0.0.0:4222" }, wantErr: "reachable from the network"},
		{name: "empty host, no TLS", mutate: func(n *NATSConfig) { n.Listen = ":4222" }, wantErr: "reachable from the network"},
		{name: "public address, no TLS", mutate: func(n *NATSConfig) { n.Listen = "192.0.2.1:4222" }, wantErr: "set nats.tls"},
		{name: "public address with TLS", mutate: func(n *NATSConfig) { n.Listen, n.TLS = "0.0.0.0:4222", tls }},
		{name: "public address, insecure", mutate: func(n *NATSConfig) { n.Listen, n.Insecure = "0.0.0.0:4222", true }},
		{name: "cert without key", mutate: func(n *NATSConfig) { n.TLS = natsembed.TLSFiles{Cert: "c.pem"} }, wantErr: "both cert and key"},
		{name: "external cluster", mutate: func(n *NATSConfig) { n.URLs, n.Listen = []string{"tls://nats.example:4222"}, "0.0.0.0:4222" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mutate(&cfg.NATS)
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestAbuseLimitsConfig: the abuse limits' keys are validated, and a file
// that sets one keeps the defaults of the others.
func TestAbuseLimitsConfig(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		want    func(Config) bool
	}{
		{name: "defaults", yaml: "listen: 127.0.0.1:8800\n", want: func(c Config) bool {
			return c.Limits == LimitsConfig{WriteRate: 10, WriteBurst: 50} && c.Purges.MaxBytes == 1<<30 && c.Push.MaxSiteBytes == 10<<30
		}},
		{name: "rate off keeps the burst", yaml: "limits: {write_rate: 0}\n", want: func(c Config) bool {
			return c.Limits == LimitsConfig{WriteRate: 0, WriteBurst: 50}
		}},
		{name: "no site bound", yaml: "push: {max_site_bytes: 0}\n", want: func(c Config) bool { return c.Push.MaxSiteBytes == 0 }},
		{name: "negative rate", yaml: "limits: {write_rate: -1}\n", wantErr: "limits.write_rate must be >= 0"},
		{name: "rate without a burst", yaml: "limits: {write_rate: 5, write_burst: 0}\n", wantErr: "limits.write_burst must be >= 1"},
		{name: "tiny purge log", yaml: "purges: {max_bytes: 1000}\n", wantErr: "purges.max_bytes must be at least 1MiB"},
		{name: "negative site bound", yaml: "push: {max_site_bytes: -1}\n", wantErr: "push.max_site_bytes must be >= 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "control.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultConfig()
			err := config.Load(path, &cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Load(%q) = %v, want nil", tt.yaml, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Load(%q) = %v, want an error containing %q", tt.yaml, err, tt.wantErr)
			}
			if tt.want != nil && !tt.want(cfg) {
				t.Errorf("Load(%q): limits %+v, purges.max_bytes %d, push.max_site_bytes %d; not what the file and the defaults say",
					tt.yaml, cfg.Limits, cfg.Purges.MaxBytes, cfg.Push.MaxSiteBytes)
			}
		})
	}
}
