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
	hostRE = regexp.MustCompile(`^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
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
		if i == 0 && o == "" && s.PushOnly {
			continue // a push-only site needs no origin
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
