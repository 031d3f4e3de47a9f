// Package fill makes one origin fetch per cache key at a time. The first
// request for a missing key starts a Flight; every request for the same key
// that arrives while it runs joins it and receives the same response head
// and, through a Body, the same bytes as they arrive, so a thousand clients
// missing on one object cause one origin fetch and none of them waits for
// the whole object before its first byte.
//
// The fetch itself belongs to the caller (package edge): fill only shares
// its result. A flight outlives the request that started it, so one client
// hanging up never fails the others.
//
// Locks: Group.mu (the flights by key) before Body.mu (a body's bytes and
// references): Join takes a reader's reference on a flight's body under
// Group.mu, and the writer calls Done (which takes Group.mu) before it
// releases its own, so the last reference cannot go between the lookup
// and the Acquire. Flight.imu (the 1xx responses) is never held with
// either.
package fill
