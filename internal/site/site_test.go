package site

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/selfcdn/cdn/internal/cachekey"
)

// TestEncodings: a site reads the same from YAML and from JSON, and JSON
// written by earlier releases (durations as text) still reads.
func TestEncodings(t *testing.T) {
	want := Site{
		Name: "www", Hosts: []string{"www.example.com"}, Origin: "https://o.example",
		TTL:      TTL{Default: time.Minute, Max: time.Hour},
		CacheKey: cachekey.Rules{Query: cachekey.QueryIgnore, VersionParam: "v"},
		TLS:      TLSACME, HSTS: HSTS{MaxAge: 24 * time.Hour, Preload: true},
	}
	var fromYAML, fromJSON Site
	y := "name: www\nhosts: [www.example.com]\norigin: https://o.example\nttl: {default: 1m, max: 1h}\ncache_key: {query: ignore, version_param: v}\ntls: acme\nhsts: {max_age: 24h, preload: true}\n"
	if err := yaml.Unmarshal([]byte(y), &fromYAML); err != nil {
		t.Fatal(err)
	}
	j := `{"name":"www","hosts":["www.example.com"],"origin":"https://o.example","ttl":{"default":"1m0s","max":"1h"},"cache_key":{"query":"ignore","version_param":"v"},"tls":"acme","hsts":{"max_age":"24h","preload":true}}`
	if err := json.Unmarshal([]byte(j), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromYAML, want) || !reflect.DeepEqual(fromJSON, want) {
		t.Errorf("YAML %+v\nJSON %+v\nwant %+v", fromYAML, fromJSON, want)
	}
	out, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var back Site
	if err := json.Unmarshal(out, &back); err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("JSON round trip: %s -> %+v, %v", out, back, err)
	}
	for _, bad := range []string{`{"ttl":{"default":60}}`, `{"ttl":{"deflt":"1m"}}`, `{"hsts":{"max_age":"soon"}}`} {
		var s Site
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("%s: read without error", bad)
		}
	}
}

func TestValidateNamesFields(t *testing.T) {
	s := Site{Name: "Bad Name", Hosts: []string{"a b"}, Origin: "ftp://x", CacheKey: cachekey.Rules{Query: "shuffle"},
		TTL: TTL{Min: time.Hour, Max: time.Minute}, TLS: "maybe"}
	err := s.Validate()
	for _, field := range []string{"name", "hosts[0]", "origin", "cache_key.query", "ttl.min", "tls"} {
		found := false
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var fe *FieldError
			if errors.As(e, &fe) && fe.Field == field {
				found = true
			}
		}
		if !found {
			t.Errorf("Validate() = %v: no error for field %s", err, field)
		}
	}
	if !strings.Contains(err.Error(), "cache_key.query: must be sorted") {
		t.Errorf("cache key problem reads %q", err)
	}
}

// TestOriginGroupAndShield: the long form of origins, the failover
// statuses, the health check and the shield read the same from YAML and
// JSON, and the short form reads as the same list.
func TestOriginGroupAndShield(t *testing.T) {
	y := `name: www
hosts: [www.example.com]
origins:
  - {url: "https://a.example", host: www.example.com, sni: a.example}
  - {url: "http://b.example:8080", backup: true}
failover_statuses: [500, 503]
origin_health: {path: /healthz, interval: 5s}
shield: {region: eu-west}
`
	j := `{"name":"www","hosts":["www.example.com"],"origins":[{"url":"https://a.example","host":"www.example.com","sni":"a.example"},{"url":"http://b.example:8080","backup":true}],"failover_statuses":[500,503],"origin_health":{"path":"/healthz","interval":"5s"},"shield":{"region":"eu-west"}}`
	var fromYAML, fromJSON Site
	if err := yaml.Unmarshal([]byte(y), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(j), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromYAML, fromJSON) {
		t.Fatalf("YAML %+v\nJSON %+v", fromYAML, fromJSON)
	}
	if err := fromYAML.Validate(); err != nil {
		t.Fatal(err)
	}
	if fromYAML.Shield.Region != "eu-west" || fromYAML.OriginHealth.Interval != 5*time.Second || len(fromYAML.OriginList()) != 2 {
		t.Errorf("read %+v", fromYAML)
	}
	short := Site{Origin: "https://a.example", FallbackOrigins: []string{"https://b.example"}, OriginHost: "client"}
	want := []Origin{{URL: "https://a.example", Host: "client"}, {URL: "https://b.example", Host: "client", Backup: true}}
	if got := short.OriginList(); !reflect.DeepEqual(got, want) {
		t.Errorf("short form: %+v, want %+v", got, want)
	}

	bad := Site{Name: "www", Hosts: []string{"a.example"}, Origin: "https://a.example",
		Origins:          []Origin{{URL: "ftp://x", Backup: true}, {URL: "https://y", SNI: "not a name"}},
		FailoverStatuses: []int{200}, OriginHealth: OriginHealth{Path: "healthz"}, Shield: Shield{Region: "eu west"}}
	err := bad.Validate()
	for _, field := range []string{"origins", "origins[0].url", "origins[1].sni", "failover_statuses[0]", "origin_health.path", "shield.region"} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("Validate() = %v: no error for %s", err, field)
		}
	}
	allBackups := Site{Name: "www", Hosts: []string{"a.example"}, Origins: []Origin{{URL: "https://a.example", Backup: true}}}
	if err := allBackups.Validate(); err == nil || !strings.Contains(err.Error(), "must not be a backup") {
		t.Errorf("only backups: %v", err)
	}
}
