package purge

import (
	"errors"
	"strings"
	"testing"

	"github.com/selfcdn/cdn/purge/purgetest"
)

func TestSiteFor(t *testing.T) {
	sites := []Site{
		{Name: "www", Hosts: []string{"www.example.com", "example.com"}},
		{Name: "shop", Hosts: []string{"*.shop.example.com"}},
		{Name: "wild", Hosts: []string{"*.example.com"}},
		{Name: "catchall", Hosts: []string{"demo.test", "*"}},
	}
	tests := []struct {
		name, host string
		sites      []Site
		want       string
		wantErr    string // a substring; "" for none
		wantNoSite bool
	}{
		{name: "exact", host: "www.example.com", sites: sites, want: "www"},
		{name: "exact beats wildcard", host: "WWW.Example.COM.", sites: sites, want: "www"},
		{name: "port ignored", host: "example.com:8443", sites: sites, want: "www"},
		{name: "longest wildcard", host: "eu.shop.example.com", sites: sites, want: "shop"},
		{name: "wildcard", host: "img.example.com", sites: sites, want: "wild"},
		{name: "wildcard is one label", host: "a.b.example.com", sites: sites, want: "catchall"},
		{name: "catch-all", host: "other.net", sites: sites, want: "catchall"},
		{name: "no site", host: "other.net", sites: sites[:3], wantErr: "host other.net", wantNoSite: true},
		{name: "none at all", host: "a.test", wantNoSite: true, wantErr: "no site serves"},
		{name: "two sites, same host", host: "a.test", sites: []Site{{Name: "b", Hosts: []string{"a.test"}}, {Name: "a", Hosts: []string{"A.test"}}},
			wantErr: "host a.test is served by several sites (a, b)"},
		{name: "two catch-alls", host: "x.test", sites: []Site{{Name: "b", Hosts: []string{"*"}}, {Name: "a", Hosts: []string{"*"}}},
			wantErr: "several sites (a, b)"},
		{name: "one site, two matching hosts", host: "a.example.com", sites: []Site{{Name: "s", Hosts: []string{"*.example.com", "*", "a.example.com"}}}, want: "s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SiteFor(tt.sites, tt.host)
			if got != tt.want || (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, ErrNoSite) != tt.wantNoSite {
				t.Errorf("SiteFor(%q) = %q, %v; want %q, error with %q (ErrNoSite %v)", tt.host, got, err, tt.want, tt.wantErr, tt.wantNoSite)
			}
		})
	}
}

func TestClientSites(t *testing.T) {
	api := purgetest.New(t, purgetest.Answer{Code: 503, Body: `{"error":{"code":"unavailable","message":"try again"}}`},
		purgetest.Answer{Code: 200, Body: `{"sites":[{"name":"www","hosts":["www.example.com"],"origin":"http://o"}]}`})
	c := &Client{BaseURL: api.URL, Token: "tok", Backoff: 1, MaxBackoff: 1}
	sites, err := c.Sites(t.Context())
	if err != nil || len(sites) != 1 || sites[0].Name != "www" || sites[0].Hosts[0] != "www.example.com" {
		t.Fatalf("Sites() = %+v, %v; want site www after one retry", sites, err)
	}
	calls := api.Calls()
	if len(calls) != 2 || calls[1].Method != "GET" || calls[1].Path != "/v1/sites" || calls[1].Auth != "Bearer tok" {
		t.Errorf("calls = %+v, want two GET /v1/sites with the token", calls)
	}

	forbidden := purgetest.New(t, purgetest.Answer{Code: 403, Body: `{"error":{"code":"forbidden","message":"this token may not GET /v1/sites"}}`})
	c = &Client{BaseURL: forbidden.URL, Token: "tok"}
	if _, err := c.Sites(t.Context()); err == nil {
		t.Fatal("Sites() with a purge-scoped token: no error")
	} else if ae, ok := errors.AsType[*APIError](err); !ok || ae.StatusCode != 403 {
		t.Errorf("Sites() error = %v, want an *APIError 403", err)
	}
}
