package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Site is one site's configuration, as the API takes it and edges apply it.
type Site struct {
	// Name identifies the site: lower-case letters, digits and dashes.
	Name string `json:"name"`
	// Hosts are the hostnames served: exact, "*.example.com", or "*".
	Hosts []string `json:"hosts"`
	// Origin is the origin's base URL (http or https).
	Origin string `json:"origin"`
	// FallbackOrigins are tried in order when the origin cannot be
	// reached or answers 502-504.
	FallbackOrigins []string `json:"fallback_origins,omitempty"`
	// OriginHost is the Host sent to the origin: empty for the origin
	// URL's host, "client" to forward the client's.
	OriginHost string `json:"origin_host,omitempty"`
	// TTL overrides the origin's freshness.
	TTL TTL `json:"ttl,omitzero"`
	// CacheKey says which parts of the URL make the cache key.
	CacheKey CacheKey `json:"cache_key,omitzero"`
	// TLS is how the site's certificate is obtained: "acme", "files"
	// (CertFile and KeyFile on every edge), "dev" (the edges' development
	// CA), or "" for plain HTTP only.
	TLS      string `json:"tls,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// HTTPSRedirect answers plain-HTTP requests with a 308 to https.
	HTTPSRedirect bool `json:"https_redirect,omitempty"`
	// HSTS is the Strict-Transport-Security sent over HTTPS.
	HSTS HSTS `json:"hsts,omitzero"`
	// PushOnly serves only pushed releases: paths not in the live release
	// get its 404 page, never the origin (which may then be empty).
	PushOnly bool `json:"push_only,omitempty"`
}

// HSTS is a site's Strict-Transport-Security (RFC 6797); zero sends none.
type HSTS struct {
	MaxAge            Duration `json:"max_age,omitzero"`
	IncludeSubdomains bool     `json:"include_subdomains,omitempty"`
	Preload           bool     `json:"preload,omitempty"`
}

// TTL is a site's freshness overrides; zero means none.
type TTL struct {
	Default Duration `json:"default,omitzero"`
	Min     Duration `json:"min,omitzero"`
	Max     Duration `json:"max,omitzero"`
}

// CacheKey is a site's query-string handling.
type CacheKey struct {
	// Query is "sorted" (default), "ordered" or "ignore".
	Query        string   `json:"query,omitempty"`
	IgnoreParams []string `json:"ignore_params,omitempty"`
	AllowParams  []string `json:"allow_params,omitempty"`
	// VersionParam is a query parameter always kept in the key ("v"),
	// whatever Query says.
	VersionParam string `json:"version_param,omitempty"`
	// Version is a release token in every key of the site: change it to
	// switch the site to fresh objects without purging.
	Version string `json:"version,omitempty"`
	// PassHeaders are URL and method override headers (edges drop them)
	// this site's origin needs; each joins the key.
	PassHeaders []string `json:"pass_headers,omitempty"`
}

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

var (
	siteName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	hostName = regexp.MustCompile(`^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// FieldError names the field a validation failed on.
type FieldError struct {
	Field, Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Validate reports every problem with s, each naming its field.
func (s Site) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if !siteName.MatchString(s.Name) {
		bad("name", "must be 1-63 lower-case letters, digits or dashes, got %q", s.Name)
	}
	if len(s.Hosts) == 0 {
		bad("hosts", "at least one hostname is required")
	}
	for i, h := range s.Hosts {
		if h != "*" && (len(h) > 253 || !hostName.MatchString(h)) {
			bad(fmt.Sprintf("hosts[%d]", i), "not a hostname, \"*.domain\" or \"*\": %q", h)
		}
	}
	for i, o := range append([]string{s.Origin}, s.FallbackOrigins...) {
		field := "origin"
		if i > 0 {
			field = fmt.Sprintf("fallback_origins[%d]", i-1)
		}
		if i == 0 && o == "" && s.PushOnly {
			continue // a push-only site needs no origin
		}
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" {
			bad(field, "must be an http or https URL with a host and no query, got %q", o)
		}
	}
	for _, d := range []struct {
		field string
		v     Duration
	}{{"ttl.default", s.TTL.Default}, {"ttl.min", s.TTL.Min}, {"ttl.max", s.TTL.Max}} {
		if d.v < 0 {
			bad(d.field, "must be >= 0, got %s", time.Duration(d.v))
		}
	}
	if s.TTL.Max > 0 && s.TTL.Min > s.TTL.Max {
		bad("ttl.min", "is above ttl.max (%s > %s)", time.Duration(s.TTL.Min), time.Duration(s.TTL.Max))
	}
	if !slices.Contains([]string{"", "sorted", "ordered", "ignore"}, s.CacheKey.Query) {
		bad("cache_key.query", "must be sorted, ordered or ignore, got %q", s.CacheKey.Query)
	}
	if strings.ContainsAny(s.CacheKey.VersionParam, "&=*?# ") {
		bad("cache_key.version_param", "must be a parameter name, got %q", s.CacheKey.VersionParam)
	}
	if len(s.CacheKey.Version) > 128 || strings.ContainsFunc(s.CacheKey.Version, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		bad("cache_key.version", "must be up to 128 printable characters without spaces, got %q", s.CacheKey.Version)
	}
	if !slices.Contains([]string{"", "acme", "files", "dev"}, s.TLS) {
		bad("tls", "must be acme, files, dev or empty, got %q", s.TLS)
	}
	if s.TLS == "files" && (s.CertFile == "" || s.KeyFile == "") {
		bad("cert_file", "cert_file and key_file are required with tls: files")
	}
	if s.HSTS.MaxAge < 0 {
		bad("hsts.max_age", "must be >= 0")
	}
	if s.HTTPSRedirect && s.TLS == "" {
		bad("https_redirect", "the site has no tls mode")
	}
	if strings.ContainsAny(s.OriginHost, " /\r\n") {
		bad("origin_host", "not a host, got %q", s.OriginHost)
	}
	return errors.Join(errs...)
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
	return watchBucket(ctx, s.sites, func(_ string, v Site, _ jetstream.KeyValueEntry) Site { return v },
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
