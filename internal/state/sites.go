package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/selfcdn/cdn/internal/cachekey"
	"github.com/selfcdn/cdn/internal/site"
)

// Site is one site's configuration: the one type (internal/site) the
// API takes, JetStream keeps and edges apply.
type Site = site.Site

// TTL, HSTS and CacheKey are a site's parts.
type (
	TTL      = site.TTL
	HSTS     = site.HSTS
	CacheKey = cachekey.Rules
)

// FieldError names the field a site's validation failed on.
type FieldError = site.FieldError

// Duration is a time.Duration written as text ("90s", "1h").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"90s\" or \"1h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// Site returns the named site.
func (s *Store) Site(ctx context.Context, name string) (Site, uint64, error) {
	return get[Site](ctx, s.sites, name)
}

// Sites lists every site.
func (s *Store) Sites(ctx context.Context) ([]Site, error) { return list[Site](ctx, s.sites) }

// PutSite stores a validated site. With create set it fails with
// ErrExists if the site is there already.
func (s *Store) PutSite(ctx context.Context, site Site, create bool) (uint64, error) {
	if err := site.Validate(); err != nil {
		return 0, err
	}
	if !create {
		return put(ctx, s.sites, site.Name, site)
	}
	b, err := json.Marshal(site)
	if err != nil {
		return 0, err
	}
	rev, err := s.sites.Create(ctx, site.Name, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("create site %s: %w", site.Name, err)
	}
	return rev, nil
}

// ErrExists is returned when creating what is already there.
var ErrExists = errors.New("already exists")

// DeleteSite removes the named site.
func (s *Store) DeleteSite(ctx context.Context, name string) error { return del(ctx, s.sites, name) }

// WatchSites calls f with every site once the current set is known, and
// again with the whole set after every change, until ctx ends or the watch
// fails (for instance when NATS goes away for good; the caller restarts it).
func (s *Store) WatchSites(ctx context.Context, f func([]Site)) error {
	return watchBucket(ctx, s, s.sites, func(_ string, v Site, _ jetstream.KeyValueEntry) Site { return v },
		func(m map[string]Site) { f(snapshot(m)) })
}

func snapshot(m map[string]Site) []Site {
	out := make([]Site, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Site) int { return strings.Compare(a.Name, b.Name) })
	return out
}
