package origin

import (
	"strings"
	"testing"
	"time"
)

// TestGroupConfigValidate: each bad field is named in the error.
func TestGroupConfigValidate(t *testing.T) {
	ok := Target{URL: "https://origin.example/app"}
	tests := []struct {
		name string
		gc   GroupConfig
		want string // "" = valid; else a part of the error
	}{
		{name: "minimal", gc: GroupConfig{Targets: []Target{ok}}},
		{name: "full", gc: GroupConfig{Targets: []Target{ok, {URL: "http://10.0.0.1:8080", Host: "www.example", SNI: "origin.example", Backup: true}},
			FailoverStatuses: []int{404, 503}, Health: HealthCheck{Path: "/healthz", Interval: time.Second, Timeout: time.Second}}},
		{name: "no targets", gc: GroupConfig{}, want: "targets: at least one origin"},
		{name: "only backups", gc: GroupConfig{Targets: []Target{{URL: ok.URL, Backup: true}}}, want: "at least one must be a primary"},
		{name: "no url", gc: GroupConfig{Targets: []Target{ok, {}}}, want: "targets[1].url: required"},
		{name: "bad scheme", gc: GroupConfig{Targets: []Target{{URL: "ftp://o.example"}}}, want: "targets[0].url: scheme"},
		{name: "no host", gc: GroupConfig{Targets: []Target{{URL: "http:///path"}}}, want: "targets[0].url: no host"},
		{name: "query", gc: GroupConfig{Targets: []Target{{URL: "http://o.example/?a=b"}}}, want: "targets[0].url: no query"},
		{name: "credentials", gc: GroupConfig{Targets: []Target{{URL: "http://u:p@o.example"}}}, want: "targets[0].url: credentials"},
		{name: "host and client host", gc: GroupConfig{Targets: []Target{{URL: ok.URL, Host: "a", ClientHost: true}}}, want: "targets[0].host: set either"},
		{name: "bad host", gc: GroupConfig{Targets: []Target{{URL: ok.URL, Host: "a b"}}}, want: "targets[0].host: not a host"},
		{name: "bad sni", gc: GroupConfig{Targets: []Target{{URL: ok.URL, SNI: "a:443"}}}, want: "targets[0].sni: not a host"},
		{name: "duplicate", gc: GroupConfig{Targets: []Target{ok, {URL: ok.URL, Backup: true}}}, want: "targets[1]: the same origin as targets[0]"},
		{name: "bad status", gc: GroupConfig{Targets: []Target{ok}, FailoverStatuses: []int{200}}, want: "failover_statuses[0]: must be 400-599"},
		{name: "relative health path", gc: GroupConfig{Targets: []Target{ok}, Health: HealthCheck{Path: "healthz"}}, want: "health.path"},
		{name: "health timeout past interval", gc: GroupConfig{Targets: []Target{ok}, Health: HealthCheck{Path: "/h", Interval: time.Second, Timeout: 2 * time.Second}}, want: "health.timeout"},
		{name: "negative breaker", gc: GroupConfig{Targets: []Target{ok}, Breaker: Breaker{Failures: -1}}, want: "breaker.failures"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.gc.WithDefaults().Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestGroupValidates: Pool.Group refuses a bad config, naming the field.
func TestGroupValidates(t *testing.T) {
	p, _, _ := newTestPool(t, Config{})
	if _, err := p.Group(GroupConfig{Targets: []Target{{URL: "gopher://x"}}}); err == nil || !strings.Contains(err.Error(), "targets[0].url") {
		t.Errorf("Group(bad url) = %v, want an error naming targets[0].url", err)
	}
}
