package state

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/natstest"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	srv := natstest.Start(t, "", "")
	s, err := Open(t.Context(), natstest.Connect(t, srv.URL), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSiteValidate(t *testing.T) {
	good := Site{Name: "www", Hosts: []string{"www.example.com", "*.static.example.com", "*"}, Origin: "https://origin.example.com"}
	tests := []struct {
		name   string
		edit   func(*Site)
		fields []string // the fields the error must name; none: valid
	}{
		{name: "valid", edit: func(*Site) {}},
		{name: "bad name", edit: func(s *Site) { s.Name = "WWW site" }, fields: []string{"name"}},
		{name: "no hosts", edit: func(s *Site) { s.Hosts = nil }, fields: []string{"hosts"}},
		{name: "bad host", edit: func(s *Site) { s.Hosts = []string{"ok.example", "bad host"} }, fields: []string{"hosts[1]"}},
		{name: "origin not http", edit: func(s *Site) { s.Origin = "ftp://x" }, fields: []string{"origin"}},
		{name: "origin with credentials", edit: func(s *Site) { s.Origin = "http://u:p@x" }, fields: []string{"origin"}},
		{name: "negative ttl, min above max", edit: func(s *Site) {
			s.TTL = TTL{Default: -1, Min: time.Hour, Max: time.Minute}
		}, fields: []string{"ttl.default", "ttl.min"}},
		{name: "query mode", edit: func(s *Site) { s.CacheKey.Query = "random" }, fields: []string{"cache_key.query"}},
		{name: "tls mode", edit: func(s *Site) { s.TLS = "maybe" }, fields: []string{"tls"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			s.Hosts = append([]string(nil), good.Hosts...)
			tt.edit(&s)
			err := s.Validate()
			if len(tt.fields) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors naming %v", tt.fields)
			}
			for _, f := range tt.fields {
				if !strings.Contains(err.Error(), f+":") {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
		})
	}
}

func TestSitesAndWatch(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	seen := make(chan []Site, 16)
	go s.WatchSites(ctx, func(sites []Site) { seen <- sites })
	next := func() []Site {
		t.Helper()
		select {
		case v := <-seen:
			return v
		case <-time.After(5 * time.Second):
			t.Fatal("no watch update in 5s")
			return nil
		}
	}
	if got := next(); len(got) != 0 {
		t.Fatalf("initial sites = %v, want none", got)
	}
	a := Site{Name: "a", Hosts: []string{"a.test"}, Origin: "http://127.0.0.1:1"}
	if _, err := s.PutSite(ctx, a, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutSite(ctx, a, true); !errors.Is(err, ErrExists) {
		t.Errorf("creating a site twice = %v, want ErrExists", err)
	}
	if got := next(); len(got) != 1 || got[0].Name != "a" {
		t.Fatalf("after create: %v", got)
	}
	if err := s.DeleteSite(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if got := next(); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
	if err := s.DeleteSite(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting a missing site = %v, want ErrNotFound", err)
	}
	if _, err := s.PutSite(ctx, Site{Name: "bad"}, false); err == nil {
		t.Error("an invalid site was stored")
	}
}
