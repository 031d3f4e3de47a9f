package edge

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.Sites = []SiteConfig{{Name: "s", Hosts: []string{"a.test"}, Origin: "http://127.0.0.1:9000"}}
		return c
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr []string // every message must appear; none means valid
	}{
		{name: "defaults plus a site", mutate: func(*Config) {}},
		{name: "no sites", mutate: func(c *Config) { c.Sites = nil }, wantErr: []string{"sites: at least one site"}},
		{name: "every problem at once", mutate: func(c *Config) {
			c.Cache.Memory = 0
			c.IdleTimeout = -1
			c.Sites[0].Origin = "ftp://x"
			c.Sites[0].Hosts = []string{"bad host"}
		}, wantErr: []string{"cache.memory must be > 0", "idle_timeout must be > 0", "origin: must be an http or https URL", `hosts[0]: not a hostname, "*.domain" or "*": "bad host"`}},
		{name: "host on two sites", mutate: func(c *Config) {
			c.Sites = append(c.Sites, SiteConfig{Name: "t", Hosts: []string{"A.test"}, Origin: "http://o"})
		}, wantErr: []string{`host "a.test" already belongs to site "s"`}},
		{name: "duplicate site name", mutate: func(c *Config) {
			c.Sites = append(c.Sites, SiteConfig{Name: "s", Hosts: []string{"b.test"}, Origin: "http://o"})
		}, wantErr: []string{`name "s" used twice`}},
		{name: "ttl min above max", mutate: func(c *Config) { c.Sites[0].TTL.Min, c.Sites[0].TTL.Max = 10, 5 }, wantErr: []string{"ttl.min: is above ttl.max"}},
		{name: "bad query mode", mutate: func(c *Config) { c.Sites[0].CacheKey.Query = "shuffle" }, wantErr: []string{"cache_key.query: must be sorted, ordered or ignore"}},
		{name: "wildcard in the middle", mutate: func(c *Config) { c.Sites[0].Hosts = []string{"a.*.test"} }, wantErr: []string{"not a hostname"}},
		{name: "origin with query", mutate: func(c *Config) { c.Sites[0].Origin = "http://o/?x=1" }, wantErr: []string{"origin: must be an http or https URL with a host and no userinfo, query or fragment"}},
		{name: "bad name", mutate: func(c *Config) { c.Name = "two words" }, wantErr: []string{"name must be a non-empty token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(&c)
			err := c.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to mention %q", err, want)
				}
			}
		})
	}
}
