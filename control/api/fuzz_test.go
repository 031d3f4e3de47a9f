package api

import (
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/selfcdn/cdn/internal/state"
)

// FuzzSiteRequest feeds arbitrary bodies to the site decoder and validator:
// no panic, and a site that passes both survives a JSON round trip
// unchanged (what the API stores is what edges read back).
func FuzzSiteRequest(f *testing.F) {
	f.Add(siteA)
	f.Add(`{"name":"x","hosts":["*.example.com","*"],"origin":"https://o.example","fallback_origins":["http://b"],"ttl":{"min":"1s","max":"1h"},"cache_key":{"query":"ignore"},"tls":"acme"}`)
	f.Add(`{"name":"x","hosts":[],"origin":""}`)
	f.Add(`{"ttl":{"default":"-5m"}}`)
	f.Fuzz(func(t *testing.T, body string) {
		var s state.Site
		r := httptest.NewRequest("POST", "/v1/sites", strings.NewReader(body))
		if err := decode(r, &s); err != nil {
			return
		}
		if err := s.Validate(); err != nil {
			return
		}
		var back state.Site
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("a valid site does not encode: %v", err)
		}
		r = httptest.NewRequest("POST", "/v1/sites", strings.NewReader(string(b)))
		if err := decode(r, &back); err != nil {
			t.Fatalf("a valid site does not decode back: %v (%s)", err, b)
		}
		if !reflect.DeepEqual(normalize(s), normalize(back)) {
			t.Fatalf("round trip changed the site:\n%+v\n%+v", s, back)
		}
	})
}

// normalize treats empty and nil slices alike.
func normalize(s state.Site) state.Site {
	for _, p := range []*[]string{&s.Hosts, &s.FallbackOrigins, &s.CacheKey.IgnoreParams, &s.CacheKey.AllowParams} {
		if len(*p) == 0 {
			*p = nil
		}
	}
	return s
}
