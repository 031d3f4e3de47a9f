package purge

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// ErrNoSite reports a host no site serves.
var ErrNoSite = errors.New("no site serves this host")

// SiteFor returns the name of the site an edge routes host to, among
// sites: an exact host first, then the longest "*.domain" wildcard, then
// "*" (as internal/routing does). Port and case are ignored. No match is
// ErrNoSite; two sites matching at the same rank (state that predates
// the API's refusal of colliding hosts) is an error naming both, since a
// purge of the wrong one would not purge what the caller meant.
func SiteFor(sites []Site, host string) (string, error) {
	host = normalHost(host)
	best, names := 0, []string{}
	for _, s := range sites {
		r := 0
		for _, h := range s.Hosts {
			r = max(r, hostRank(normalHost(h), host))
		}
		switch {
		case r == 0 || r < best:
		case r > best:
			best, names = r, []string{s.Name}
		case !slices.Contains(names, s.Name):
			names = append(names, s.Name)
		}
	}
	switch len(names) {
	case 0:
		return "", fmt.Errorf("host %s: %w", host, ErrNoSite)
	case 1:
		return names[0], nil
	}
	slices.Sort(names)
	return "", fmt.Errorf("host %s is served by several sites (%s): name one", host, strings.Join(names, ", "))
}

// hostRank ranks how pattern (a site's host) matches host: 0 not at all,
// 1 for "*", 2+len for "*.domain" (longer is more specific), and highest
// for the host itself.
func hostRank(pattern, host string) int {
	switch {
	case pattern == host:
		return 1 << 20
	case pattern == "*":
		return 1
	case strings.HasPrefix(pattern, "*."):
		suffix := pattern[1:]
		// One label under the domain, as an edge routes it.
		if len(host) > len(suffix) && strings.HasSuffix(host, suffix) && !strings.Contains(host[:len(host)-len(suffix)], ".") {
			return 2 + len(suffix)
		}
	}
	return 0
}

// normalHost lower-cases h and drops a port and a trailing dot.
func normalHost(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(strings.Trim(h, "[]"), "."))
}
