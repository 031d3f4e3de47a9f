// Package hostclaim decides when two sites claim the same host. The edge's
// standalone config and control's API apply the same rule, so a site set
// one accepts the other accepts too, and every host routes to one site.
//
// Two patterns collide when their Keys are equal: the same exact host
// (case and a trailing dot aside), the same wildcard ("*.example.com"
// twice), or "*" twice. An exact host under another site's wildcard is no
// collision: internal/routing prefers the exact host, as DNS does.
package hostclaim

import "strings"

// Key is the form two host patterns collide on: lower case, without the
// trailing dot of a fully qualified name, as internal/routing matches them.
func Key(pattern string) string {
	return strings.ToLower(strings.TrimSuffix(pattern, "."))
}

// Claims maps each claimed host pattern, by Key, to the site claiming it.
// Make one with make(Claims) or a literal; a nil Claims panics on Claim.
type Claims map[string]string

// Claim records that site serves pattern. When another site claimed it
// first, nothing changes and Claim returns that site and false. A site may
// name a pattern twice.
func (c Claims) Claim(site, pattern string) (owner string, ok bool) {
	k := Key(pattern)
	if prev, taken := c[k]; taken && prev != site {
		return prev, false
	}
	c[k] = site
	return site, true
}
