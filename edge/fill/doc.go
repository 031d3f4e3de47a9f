// Package fill makes one upstream fetch per cache key at a time, and
// stores what it fetched. The first request for a missing key starts a
// Flight; every request for the same key that arrives while it runs joins
// it and receives the same response head and, through a Body, the same
// bytes as they arrive, so a thousand clients missing on one object cause
// one origin fetch and none of them waits for the whole object before its
// first byte.
//
// A Filler runs the fetch (Run, one Job per flight): it asks the
// upstream (the edge's asks its region's home and shield edges, then the
// site's origin group), publishes the head, streams the body into the
// flight, and stores a shareable response in the memory tier, then the
// disk tier (edge/cache), under a Vary index when it varies. A 304
// refreshes the entry being revalidated, an upstream failure may answer
// from it (RFC 5861 stale-if-error), an unshareable answer marks the URL
// hit-for-miss, and an invalidation of the URL after the fill started
// keeps it from storing. The caller (package edge) decides when to fill,
// builds the request and plans the hops; a flight outlives the request
// that started it, so one client hanging up never fails the others.
//
// Invariants: a fill leaves the Group (Group.Done) before it tells its
// waiters the body is complete or failed, except a body kept only on disk,
// which stays joinable until it is written; Run releases the writer's
// reference on the body, the job's stored entry and its context.
//
// Locks: Group.mu (the flights by key) before Body.mu (a body's bytes and
// references): Join takes a reader's reference on a flight's body under
// Group.mu, and the writer calls Done (which takes Group.mu) before it
// releases its own, so the last reference cannot go between the lookup
// and the Acquire. Flight.imu (the 1xx responses) is never held with
// either. A Filler holds no lock of its own; the cache tiers' locks are
// taken and released inside their calls, never with one of these held.
package fill
