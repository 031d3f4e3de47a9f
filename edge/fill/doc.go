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
package fill
