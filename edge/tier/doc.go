// Package tier is the edge's tier inside its region and toward a shield
// region: which edge is a cache key's home, and the signed edge-to-edge
// requests a miss sends there before it goes to the origin.
//
// Every key has a home edge in each region, chosen by weighted rendezvous
// hashing over the region's healthy edges (View). Rendezvous moves only
// the keys of an edge that joins or leaves, about 1/N of them. A home
// that just came up takes its share gradually (its weight ramps up over
// Config.Rampup from the time control saw it healthy), so a restart does
// not stampede a cold node. Each edge bounds the requests it has
// outstanding at any one peer (bounded-load hashing: no more than
// LoadFactor times the mean), and a peer that keeps failing is skipped
// for a while, so one hot key or a slow edge cannot melt one node.
//
// Hops are marked twice. CDN-Loop (RFC 8586) carries the network's name
// once per hop on every request an edge forwards, so a request that
// comes back (an origin pointed at the CDN) is refused once its count
// reaches the hop budget. CDN-Peer carries who sent it, for which stage
// (home or shield), the membership epoch it was routed by, and an
// HMAC-SHA256 over all that and the request, with a secret from control.
// Only a request that verifies is a peer's: anything else, forged marks
// included, is a client's request like any other, and never makes an
// edge skip its cache, fetch somewhere it would not, or forward again.
//
// Beside the mark rides the last purge version the asker applied
// (Cdn-Peer-Purges). A peer that applied fewer refuses with a 503 and the
// asker goes on to its next hop or the origin: otherwise an edge that
// caught up first (a region back from a cut) would store the home's
// purged copy, stamped after the purge, and serve it until it expired.
//
// The rule that bounds forwarding: a request that came from a peer for
// the home stage may go on only to the shield; one for the shield stage
// goes to the origin. An edge never forwards inside its region what a
// peer sent it, whatever its own view of the membership says (an epoch
// differing from its own is counted, not chased).
package tier
