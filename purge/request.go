package purge

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/selfcdn/cdn/internal/cachekey"
	"github.com/selfcdn/cdn/internal/routing"
)

// Limits on one request, so a runaway pipeline cannot write a purge that
// every edge must hold in memory. The API answers 413 past them.
const (
	// MaxItems bounds URLs, prefixes and tags together.
	MaxItems = 10_000
	// MaxURLLength bounds one URL or prefix.
	MaxURLLength = 4096
	// MaxTagLength bounds one tag.
	MaxTagLength = 256
)

// Request is one purge: URLs, prefixes, tags, or the whole site, removed
// (hard) or marked stale (soft). The zero value asks for nothing and does
// not validate.
type Request struct {
	// URLs are exact URLs: absolute ("https://www.example.com/a.css?v=1")
	// or a path ("/a.css") for every host of the site. Every variant and
	// encoding of a URL goes with it.
	URLs []string `json:"urls,omitempty"`
	// Prefixes are literal URL prefixes, absolute or a path ("/assets/").
	Prefixes []string `json:"prefixes,omitempty"`
	// Tags name objects by the origin's Surrogate-Key or Cache-Tag header.
	Tags []string `json:"tags,omitempty"`
	// All purges the whole site; it takes no URLs, prefixes or tags.
	All bool `json:"all,omitempty"`
	// Soft marks matching objects stale instead of removing them: they are
	// served only while being revalidated, or when the origin fails.
	Soft bool `json:"soft,omitempty"`
}

// Message is a purge as written to the stream: the request, the site it
// is for, and when and under which idempotency key it was accepted.
type Message struct {
	Site string `json:"site"`
	Request
	Time           time.Time `json:"time"`
	IdempotencyKey string    `json:"idempotency_key,omitempty"`
}

// ErrTooLarge reports a request over MaxItems.
var ErrTooLarge = fmt.Errorf("purge lists more than %d items", MaxItems)

// FieldError is a request that does not validate, naming the field.
type FieldError struct {
	Field, Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Validate checks r against the hosts of the site it is for (exact,
// "*.example.com" or "*"), reporting every problem at once. A request
// over the limits fails with ErrTooLarge alone.
func (r Request) Validate(hosts []string) error {
	if len(r.URLs)+len(r.Prefixes)+len(r.Tags) > MaxItems {
		return ErrTooLarge
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	switch n := len(r.URLs) + len(r.Prefixes) + len(r.Tags); {
	case r.All && n > 0:
		bad("all", "a whole-site purge takes no urls, prefixes or tags")
	case !r.All && n == 0:
		bad("request", "nothing to purge: give urls, prefixes, tags, or all")
	}
	served := hostTable(hosts)
	for i, u := range r.URLs {
		if err := checkURL(u, served, false); err != nil {
			bad(fmt.Sprintf("urls[%d]", i), "%v", err)
		}
	}
	for i, p := range r.Prefixes {
		if err := checkURL(p, served, true); err != nil {
			bad(fmt.Sprintf("prefixes[%d]", i), "%v", err)
		}
	}
	for i, t := range r.Tags {
		if err := checkTag(t); err != nil {
			bad(fmt.Sprintf("tags[%d]", i), "%v", err)
		}
	}
	return errors.Join(errs...)
}

// checkTag validates one tag: what a Surrogate-Key or Cache-Tag header
// can carry as one item.
func checkTag(t string) error {
	switch {
	case t == "":
		return errors.New("empty tag")
	case len(t) > MaxTagLength:
		return fmt.Errorf("longer than %d bytes", MaxTagLength)
	case strings.ContainsFunc(t, func(c rune) bool { return c <= ' ' || c == ',' || c == 0x7f }):
		return fmt.Errorf("%q holds a space, comma or control character", t)
	}
	return nil
}

// checkURL validates a purge URL or prefix: a path, or an http(s) URL
// whose host the site serves.
func checkURL(s string, served *served, prefix bool) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > MaxURLLength:
		return fmt.Errorf("longer than %d bytes", MaxURLLength)
	case strings.ContainsFunc(s, func(c rune) bool { return c <= ' ' || c == 0x7f }):
		return fmt.Errorf("%q holds a space or control character", s)
	case prefix && strings.Contains(s, "*"):
		return fmt.Errorf("%q: a prefix is literal and matches everything under it; drop the *", s)
	case strings.Contains(s, "#"):
		return fmt.Errorf("%q: a fragment is never sent to the CDN", s)
	}
	host, _, err := Split(s)
	if err != nil {
		return err
	}
	if host != "" && served.Lookup(host) == nil {
		return fmt.Errorf("host %s is not a host of this site", host)
	}
	return nil
}

// Split parses a purge URL or prefix into its host (empty for a path) and
// its path with the query, path "/" when empty.
func Split(s string) (host, pathQuery string, err error) {
	if strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//") {
		return "", s, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", fmt.Errorf("%q is not a URL: %w", s, errors.Unwrap(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Opaque != "" {
		return "", "", fmt.Errorf("%q: want a path (/a.css) or an http(s) URL with a host", s)
	}
	if u.User != nil {
		return "", "", fmt.Errorf("%q: user information is not part of a cache key", s)
	}
	pq := u.EscapedPath()
	if pq == "" {
		pq = "/"
	}
	if u.RawQuery != "" || u.ForceQuery {
		pq += "?" + u.RawQuery
	}
	return cachekey.Host(u.Scheme, u.Host), pq, nil
}

// served is the site's hosts as the edge routes them.
type served = routing.Table[struct{}]

// hostTable builds the routing table of hosts, so a purge accepts exactly
// the hosts an edge would route to the site.
func hostTable(hosts []string) *served {
	site := &struct{}{}
	routes := make([]routing.Route[struct{}], len(hosts))
	for i, h := range hosts {
		routes[i] = routing.Route[struct{}]{Host: h, Site: site}
	}
	return routing.New(routes)
}

// Covers reports whether the edge routes host to a site with hosts: exact,
// "*.example.com" (one label under example.com), or "*".
func Covers(hosts []string, host string) bool { return hostTable(hosts).Lookup(host) != nil }
