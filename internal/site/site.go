// Package site is the one description of a CDN site: its hosts, origins,
// freshness overrides, cache key, TLS and push settings. It has two
// encodings, YAML (an edge's config file) and JSON (control's API, the
// JetStream state, the dashboard), and one Validate, so every door
// accepts and refuses the same sites (issue 21).
package site

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/selfcdn/cdn/internal/cachekey"
)

// Site is one site. The zero value is not valid: a site needs a name,
// hosts and an origin (or push_only).
type Site struct {
	// Name identifies the site in metrics, logs, tokens and purges:
	// lower-case letters, digits and dashes.
	Name string `yaml:"name" json:"name"`
	// Hosts are the hostnames served: exact ("www.example.com"), a
	// wildcard for one label ("*.example.com"), or "*" for any host.
	Hosts []string `yaml:"hosts" json:"hosts"`
	// Origin is the origin's base URL (http or https); empty only for a
	// push-only site.
	Origin string `yaml:"origin" json:"origin,omitempty"`
	// FallbackOrigins are tried in order when a fill cannot reach the
	// origin, times out, or gets 502, 503 or 504 from it.
	FallbackOrigins []string `yaml:"fallback_origins" json:"fallback_origins,omitempty"`
	// OriginHost is the Host header sent to the origin. Default: the
	// host of Origin; "client" forwards the client's Host.
	OriginHost string `yaml:"origin_host" json:"origin_host,omitempty"`
	// Origins is the long form of Origin and FallbackOrigins: each origin
	// with its own Host and TLS name; backups are tried only when every
	// primary is down or failed the request. Use one form or the other.
	Origins []Origin `yaml:"origins" json:"origins,omitempty"`
	// FailoverStatuses are the origin statuses that try the next origin.
	// Default 502, 503, 504.
	FailoverStatuses []int `yaml:"failover_statuses" json:"failover_statuses,omitempty"`
	// OriginHealth checks the origins actively; zero checks passively
	// only (failures of real requests open a circuit breaker).
	OriginHealth OriginHealth `yaml:"origin_health" json:"origin_health,omitzero"`
	// Shield names the region whose edges alone fill from the origin:
	// edges elsewhere fill through it, so the origin sees one fetch per
	// object for the whole network.
	Shield Shield `yaml:"shield" json:"shield,omitzero"`
	// TTL overrides the origin's freshness.
	TTL TTL `yaml:"ttl" json:"ttl,omitzero"`
	// CacheKey says which parts of the request make the cache key.
	CacheKey cachekey.Rules `yaml:"cache_key" json:"cache_key,omitzero"`
	// TLS is how the site's certificate is obtained: "acme", "files"
	// (CertFile and KeyFile on every edge, reloaded when they change),
	// "dev" (the development CA), or "" for plain HTTP only.
	TLS      TLSMode `yaml:"tls" json:"tls,omitempty"`
	CertFile string  `yaml:"cert_file" json:"cert_file,omitempty"`
	KeyFile  string  `yaml:"key_file" json:"key_file,omitempty"`
	// HTTPSRedirect answers plain-HTTP requests with a 308 to https.
	HTTPSRedirect bool `yaml:"https_redirect" json:"https_redirect,omitempty"`
	// HSTS is the Strict-Transport-Security sent over HTTPS; zero sends
	// none.
	HSTS HSTS `yaml:"hsts" json:"hsts,omitzero"`
	// PushOnly serves only pushed releases: a path not in the live
	// release gets the release's 404 page, never the origin (which may
	// then be empty).
	PushOnly bool `yaml:"push_only" json:"push_only,omitempty"`
}

// TLSMode is how a site gets its certificate.
type TLSMode string

// The modes; TLSNone serves the site over plain HTTP only.
const (
	TLSNone  TLSMode = ""
	TLSACME  TLSMode = "acme"
	TLSFiles TLSMode = "files"
	TLSDev   TLSMode = "dev"
)

// Valid reports whether m is one of the modes.
func (m TLSMode) Valid() bool {
	return slices.Contains([]TLSMode{TLSNone, TLSACME, TLSFiles, TLSDev}, m)
}

// Origin is one origin server of a site.
type Origin struct {
	// URL is its base URL (http or https).
	URL string `yaml:"url" json:"url"`
	// Host is the Host header it is sent: default the URL's host;
	// "client" forwards the client's.
	Host string `yaml:"host" json:"host,omitempty"`
	// SNI is the TLS server name: default the Host sent.
	SNI string `yaml:"sni" json:"sni,omitempty"`
	// Backup origins are tried after every primary.
	Backup bool `yaml:"backup" json:"backup,omitempty"`
}

// OriginHealth is the active health check of a site's origins.
type OriginHealth struct {
	// Path is requested (GET) on each origin; "" checks none.
	Path string `yaml:"path"`
	// Interval between checks (default 10s) and Timeout of one (2s).
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
}

type originHealthJSON struct {
	Path     string   `json:"path"`
	Interval duration `json:"interval,omitzero"`
	Timeout  duration `json:"timeout,omitzero"`
}

func (o OriginHealth) MarshalJSON() ([]byte, error) {
	return json.Marshal(originHealthJSON{o.Path, duration(o.Interval), duration(o.Timeout)})
}

func (o *OriginHealth) UnmarshalJSON(b []byte) error {
	var j originHealthJSON
	if err := strictJSON(b, &j); err != nil {
		return err
	}
	*o = OriginHealth{j.Path, time.Duration(j.Interval), time.Duration(j.Timeout)}
	return nil
}

// Shield is a site's shield region.
type Shield struct {
	Region string `yaml:"region" json:"region"`
}

// OriginList is the site's origins in the long form, whichever form it
// was written in: Origin and FallbackOrigins become a primary and
// backups, each sent OriginHost.
func (s Site) OriginList() []Origin {
	if len(s.Origins) > 0 {
		return s.Origins
	}
	if s.Origin == "" {
		return nil
	}
	out := []Origin{{URL: s.Origin, Host: s.OriginHost}}
	for _, fo := range s.FallbackOrigins {
		out = append(out, Origin{URL: fo, Host: s.OriginHost, Backup: true})
	}
	return out
}

// TTL is a site's freshness overrides; zero fields mean none. In JSON
// the durations are text ("90s", "1h"), as in YAML.
type TTL struct {
	// Default applies when the origin gives no lifetime.
	Default time.Duration `yaml:"default"`
	// Min raises shorter lifetimes (not no-cache).
	Min time.Duration `yaml:"min"`
	// Max caps longer ones.
	Max time.Duration `yaml:"max"`
}

// HSTS is a site's Strict-Transport-Security (RFC 6797); a zero MaxAge
// sends none.
type HSTS struct {
	MaxAge            time.Duration `yaml:"max_age"`
	IncludeSubdomains bool          `yaml:"include_subdomains"`
	Preload           bool          `yaml:"preload"`
}

// Header is the field value, or nil when HSTS is off.
func (h HSTS) Header() []string {
	if h.MaxAge <= 0 {
		return nil
	}
	v := fmt.Sprintf("max-age=%d", int64(h.MaxAge/time.Second))
	if h.IncludeSubdomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return []string{v}
}

// duration is a time.Duration in JSON as text.
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`a duration is a string such as "90s" or "1h"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q", s)
	}
	*d = duration(v)
	return nil
}

type ttlJSON struct {
	Default duration `json:"default,omitzero"`
	Min     duration `json:"min,omitzero"`
	Max     duration `json:"max,omitzero"`
}

func (t TTL) MarshalJSON() ([]byte, error) {
	return json.Marshal(ttlJSON{duration(t.Default), duration(t.Min), duration(t.Max)})
}

func (t *TTL) UnmarshalJSON(b []byte) error {
	var j ttlJSON
	if err := strictJSON(b, &j); err != nil {
		return err
	}
	*t = TTL{time.Duration(j.Default), time.Duration(j.Min), time.Duration(j.Max)}
	return nil
}

type hstsJSON struct {
	MaxAge            duration `json:"max_age,omitzero"`
	IncludeSubdomains bool     `json:"include_subdomains,omitempty"`
	Preload           bool     `json:"preload,omitempty"`
}

func (h HSTS) MarshalJSON() ([]byte, error) {
	return json.Marshal(hstsJSON{duration(h.MaxAge), h.IncludeSubdomains, h.Preload})
}

func (h *HSTS) UnmarshalJSON(b []byte) error {
	var j hstsJSON
	if err := strictJSON(b, &j); err != nil {
		return err
	}
	*h = HSTS{time.Duration(j.MaxAge), j.IncludeSubdomains, j.Preload}
	return nil
}

// strictJSON decodes b into v refusing unknown fields, as the API does
// for the whole site.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// regionRE is what edges may call their region.
	regionRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	hostRE   = regexp.MustCompile(`^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// FieldError names the field a validation failed on.
type FieldError struct {
	Field, Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Validate reports every problem with s, each a *FieldError naming its
// field (joined with errors.Join).
func (s Site) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if !nameRE.MatchString(s.Name) {
		bad("name", "must be 1-63 lower-case letters, digits or dashes, got %q", s.Name)
	}
	if len(s.Hosts) == 0 {
		bad("hosts", "at least one hostname is required")
	}
	for i, h := range s.Hosts {
		// Case is not a hostname's business: routing folds it.
		if h != "*" && (len(h) > 253 || !hostRE.MatchString(strings.TrimSuffix(strings.ToLower(h), "."))) {
			bad(fmt.Sprintf("hosts[%d]", i), `not a hostname, "*.domain" or "*": %q`, h)
		}
	}
	for i, o := range append([]string{s.Origin}, s.FallbackOrigins...) {
		field := "origin"
		if i > 0 {
			field = fmt.Sprintf("fallback_origins[%d]", i-1)
		}
		if i == 0 && o == "" && (s.PushOnly || len(s.Origins) > 0) {
			continue // a push-only site needs no origin; origins replaces it
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.RawQuery != "" || u.Fragment != "" {
			bad(field, "must be an http or https URL with a host and no userinfo, query or fragment, got %q", o)
		}
	}
	if strings.ContainsAny(s.OriginHost, " /\r\n@") {
		bad("origin_host", "not a host, got %q", s.OriginHost)
	}
	if len(s.Origins) > 0 && (s.Origin != "" || len(s.FallbackOrigins) > 0 || s.OriginHost != "") {
		bad("origins", "use origins or origin (with fallback_origins and origin_host), not both")
	}
	primaries := 0
	for i, o := range s.Origins {
		field := fmt.Sprintf("origins[%d]", i)
		if u, err := url.Parse(o.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			u.RawQuery != "" || u.Fragment != "" {
			bad(field+".url", "must be an http or https URL with a host and no userinfo, query or fragment, got %q", o.URL)
		}
		if strings.ContainsAny(o.Host, " /\r\n@") {
			bad(field+".host", "not a host, got %q", o.Host)
		}
		if o.SNI != "" && (len(o.SNI) > 253 || !hostRE.MatchString(strings.ToLower(o.SNI)) || strings.HasPrefix(o.SNI, "*")) {
			bad(field+".sni", "not a hostname, got %q", o.SNI)
		}
		if !o.Backup {
			primaries++
		}
	}
	if len(s.Origins) > 0 && primaries == 0 {
		bad("origins", "at least one origin must not be a backup")
	}
	for i, code := range s.FailoverStatuses {
		if code < 400 || code > 599 {
			bad(fmt.Sprintf("failover_statuses[%d]", i), "must be a 4xx or 5xx status, got %d", code)
		}
	}
	if h := s.OriginHealth; h.Path != "" && !strings.HasPrefix(h.Path, "/") || strings.ContainsAny(h.Path, " \r\n#") {
		bad("origin_health.path", "must be a path starting with /, got %q", h.Path)
	}
	if s.OriginHealth.Interval < 0 || s.OriginHealth.Timeout < 0 {
		bad("origin_health", "interval and timeout must be >= 0")
	}
	if s.Shield.Region != "" && !regionRE.MatchString(s.Shield.Region) {
		bad("shield.region", "not a region name, got %q", s.Shield.Region)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"ttl.default", s.TTL.Default}, {"ttl.min", s.TTL.Min}, {"ttl.max", s.TTL.Max}} {
		if d.v < 0 {
			bad(d.field, "must be >= 0, got %s", d.v)
		}
	}
	if s.TTL.Max > 0 && s.TTL.Min > s.TTL.Max {
		bad("ttl.min", "is above ttl.max (%s > %s)", s.TTL.Min, s.TTL.Max)
	}
	if err := s.CacheKey.Validate(); err != nil {
		// cachekey names its key first ("query must be ..."); so does
		// the field here.
		field, problem := "cache_key", err.Error()
		if i := strings.IndexAny(problem, " :"); i > 0 {
			field, problem = field+"."+problem[:i], strings.TrimLeft(problem[i:], ": ")
		}
		bad(field, "%s", problem)
	}
	if !s.TLS.Valid() {
		bad("tls", "must be acme, files, dev or empty, got %q", s.TLS)
	}
	if s.TLS == TLSFiles && (s.CertFile == "" || s.KeyFile == "") {
		bad("cert_file", "cert_file and key_file are required with tls: files")
	}
	if s.HSTS.MaxAge < 0 {
		bad("hsts.max_age", "must be >= 0, got %s", s.HSTS.MaxAge)
	}
	if s.HTTPSRedirect && s.TLS == TLSNone {
		bad("https_redirect", "the site has no tls mode")
	}
	return errors.Join(errs...)
}
