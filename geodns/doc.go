// Package geodns is the CDN's authoritative DNS server: it answers the
// CDN's zones from configured records, and every site hostname with the
// nearest healthy edges for the client (by EDNS Client Subnet, else the
// resolver's address), from the edge registry and health control keeps in
// NATS (follow.go), or from a static list when it runs alone.
//
// Invariants: answers come from a table built from the whole control
// state and swapped in at once (atomic.Pointer), so a query never sees
// half an update; with no healthy edge every edge answers (fail open,
// cdn_geodns_fail_open_total); instances share nothing but NATS and keep
// answering from the last state when NATS goes away. UDP is read and
// written in batches by a few long-lived workers, which on Linux wait in
// recvmmsg holding their Ps (udp_linux.go); TCP is never
// rate limited, so a client truncated by the limiter can retry there.
// Packed UDP answers are reused from a cache that belongs to the table
// (answercache.go), so a new table is never answered from an old one.
//
// Locks: Server.mu guards the control state a table is built from, and
// is held while a table is built; each rate-limit shard's mu guards its
// buckets, and each answer-cache shard's mu its entries, on the query
// path. None is held while another is taken.
package geodns
