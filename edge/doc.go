// Package edge is the caching edge: Config, New and Run, the listeners
// (HTTP/1.1 through fasthttp and h2c on one port, HTTPS with HTTP/1.1 and
// HTTP/2 by ALPN and HTTP/3 over UDP on another), the admin listener
// (/metrics, /healthz, /readyz) and the request path, Handler.
//
// A GET or HEAD goes: refuse a malformed request (requestcheck.go),
// route by Host to a site, answer from the site's pushed release if it
// holds the path, else build the cache key, look it up (memory tier,
// then disk, with the site's purge rules), and serve a fresh or usable
// stale entry, or join the one coalesced origin fetch for the key
// (edge/fill), which stores what RFC 9111 lets it store while it
// streams to every waiter. The edge decides to fill, builds the
// upstream request and plans its hops (fill.go), and asks those hops
// before the origin group (peer.go); the fill itself, from the fetch to
// the stored entry, is a fill.Filler's. Other methods pass through
// uncached; a successful unsafe one invalidates the URL (RFC 9111 §4.4).
//
// Invariants:
//   - every protocol is served by the same Handler; fail (respond.go) is
//     the one place an error becomes a status and a Cache-Status detail;
//   - the site table and the cache-key rules are swapped whole
//     (atomic.Pointer) when the sites change, so a request sees one
//     consistent set;
//   - an object is stamped with the purge clock when its fetch starts, so
//     a fetch racing a purge stores an object that purge still matches;
//   - a fill outlives the request that started it (bgCtx), and is waited
//     for on shutdown;
//   - a body that breaks after the status went out cuts the connection
//     rather than passing a short body as whole, and is never cached.
//
// Locks: Handler.bgMu orders starting a background task before the
// shutdown's wait; protoMux.mu (listen.go) protects its set of open
// connections; pushedReleases.mu protects its map of release holders.
// Each is held only for its own few lines: none is held while another
// lock of this package (or of edge/cache, edge/fill or purge) is taken.
package edge
