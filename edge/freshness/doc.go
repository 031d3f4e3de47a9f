// Package freshness holds the HTTP caching rules an edge applies, as pure
// functions over headers and times: whether a response may be stored
// (RFC 9111 §3), how long it stays fresh (§4.2.1, §4.2.2, RFC 9213
// CDN-Cache-Control, per-site TTL overrides), its age (§4.2.3), and whether a
// stored response may be served now, served stale while it is revalidated
// (RFC 5861), or must be validated first.
//
// Nothing here does I/O or reads a clock: callers pass the times.
package freshness
