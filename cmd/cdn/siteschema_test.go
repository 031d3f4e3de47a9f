package main

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/control/api"
	"github.com/selfcdn/cdn/edge"
	"github.com/selfcdn/cdn/internal/config"
	"github.com/selfcdn/cdn/internal/statetest"
)

// TestOneSiteSchema: an edge's YAML and control's API accept and refuse
// the same sites (issue 21): each case is one site, written as a site of
// an edge config file and as the body of PUT /v1/sites/{name}.
func TestOneSiteSchema(t *testing.T) {
	tests := []struct {
		name       string
		yaml, json string // the same site in both encodings
		ok         bool
	}{
		{name: "minimal", ok: true,
			yaml: `{name: www, hosts: [www.example.com], origin: "http://127.0.0.1:1"}`,
			json: `{"name":"www","hosts":["www.example.com"],"origin":"http://127.0.0.1:1"}`},
		{name: "every field", ok: true,
			yaml: `{name: www, hosts: ["*.example.com", www.example.org], origin: "https://o.example", fallback_origins: ["http://b.example"], origin_host: client, ttl: {default: 1m, min: 10s, max: 1h}, cache_key: {query: ignore, version_param: v, pass_headers: [X-Http-Method-Override]}, tls: dev, https_redirect: true, hsts: {max_age: 24h, include_subdomains: true}}`,
			json: `{"name":"www","hosts":["*.example.com","www.example.org"],"origin":"https://o.example","fallback_origins":["http://b.example"],"origin_host":"client","ttl":{"default":"1m","min":"10s","max":"1h"},"cache_key":{"query":"ignore","version_param":"v","pass_headers":["X-Http-Method-Override"]},"tls":"dev","https_redirect":true,"hsts":{"max_age":"24h","include_subdomains":true}}`},
		{name: "push only, no origin", ok: true,
			yaml: `{name: docs, hosts: [docs.example.com], push_only: true}`,
			json: `{"name":"docs","hosts":["docs.example.com"],"push_only":true}`},
		{name: "upper-case name",
			yaml: `{name: WWW, hosts: [www.example.com], origin: "http://o"}`,
			json: `{"name":"WWW","hosts":["www.example.com"],"origin":"http://o"}`},
		{name: "host with a space",
			yaml: `{name: www, hosts: ["bad host"], origin: "http://o"}`,
			json: `{"name":"www","hosts":["bad host"],"origin":"http://o"}`},
		{name: "wildcard in the middle",
			yaml: `{name: www, hosts: ["a.*.test"], origin: "http://o"}`,
			json: `{"name":"www","hosts":["a.*.test"],"origin":"http://o"}`},
		{name: "origin with userinfo",
			yaml: `{name: www, hosts: [a.test], origin: "http://u:p@o"}`,
			json: `{"name":"www","hosts":["a.test"],"origin":"http://u:p@o"}`},
		{name: "origin with a query",
			yaml: `{name: www, hosts: [a.test], origin: "http://o/?x=1"}`,
			json: `{"name":"www","hosts":["a.test"],"origin":"http://o/?x=1"}`},
		{name: "ttl min above max",
			yaml: `{name: www, hosts: [a.test], origin: "http://o", ttl: {min: 1h, max: 1m}}`,
			json: `{"name":"www","hosts":["a.test"],"origin":"http://o","ttl":{"min":"1h","max":"1m"}}`},
		{name: "a pass header the edge does not remove",
			yaml: `{name: www, hosts: [a.test], origin: "http://o", cache_key: {pass_headers: [Cookie]}}`,
			json: `{"name":"www","hosts":["a.test"],"origin":"http://o","cache_key":{"pass_headers":["Cookie"]}}`},
		{name: "tls files without files",
			yaml: `{name: www, hosts: [a.test], origin: "http://o", tls: files}`,
			json: `{"name":"www","hosts":["a.test"],"origin":"http://o","tls":"files"}`},
		{name: "redirect without tls",
			yaml: `{name: www, hosts: [a.test], origin: "http://o", https_redirect: true}`,
			json: `{"name":"www","hosts":["a.test"],"origin":"http://o","https_redirect":true}`},
		{name: "unknown field",
			yaml: `{name: www, hosts: [a.test], origin: "http://o", orign: "http://p"}`,
			json: `{"name":"www","hosts":["a.test"],"origin":"http://o","orign":"http://p"}`},
	}
	store := statetest.Open(t)
	now := time.Now()
	secret, tok := api.NewToken("test", []string{api.ScopeAdmin}, 0, now)
	if err := store.PutToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	h := httptest.NewServer(api.New(store, api.NewProgress(), slog.New(slog.DiscardHandler), time.Now, 1<<20, 1<<20))
	defer h.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "edge.yaml")
			dir := t.TempDir()
			// An edge that can serve what a valid site asks for (HTTPS for
			// tls: dev): only the site decides.
			yaml := fmt.Sprintf("name: e\nlisten: 127.0.0.1:0\ncache: {dir: %q}\ntls: {listen: \"127.0.0.1:0\", dev_ca: %q}\nsites:\n  - %s\n",
				dir, filepath.Join(dir, "ca"), tt.yaml)
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := edge.DefaultConfig()
			yamlErr := config.Load(path, &cfg)

			name := "www"
			if strings.Contains(tt.json, `"docs"`) {
				name = "docs"
			}
			req, _ := http.NewRequest(http.MethodPut, h.URL+"/v1/sites/"+name, strings.NewReader(tt.json))
			req.Header.Set("Authorization", "Bearer "+secret)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			apiOK := res.StatusCode/100 == 2
			if (yamlErr == nil) != tt.ok || apiOK != tt.ok {
				t.Errorf("edge YAML: %v; API: %d; want both to %s", yamlErr, res.StatusCode, map[bool]string{true: "accept", false: "refuse"}[tt.ok])
			}
			// Leave no site behind to collide with the next case's hosts.
			del, _ := http.NewRequest(http.MethodDelete, h.URL+"/v1/sites/"+name, nil)
			del.Header.Set("Authorization", "Bearer "+secret)
			if res, err := http.DefaultClient.Do(del); err == nil {
				res.Body.Close()
			}
		})
	}
}
