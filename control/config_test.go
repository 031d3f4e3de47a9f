package control

import (
	"strings"
	"testing"

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
