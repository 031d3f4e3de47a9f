// Package state is the typed access every part of the CDN has to the shared
// state in NATS JetStream: site configuration, the edge registry, edge
// status (health and drain, owned by control), API tokens and edges'
// purge reports, each a KV bucket; the purge log, a stream (purges.go);
// and pushed releases, their blobs in an object store (releases.go).
// Control writes; edges and geodns read and watch (watch.go).
//
// Invariants: JetStream is the one copy, so any number of control
// processes can share it. The one thing held in memory, control's blob
// index (blobindex.go, with its own RWMutex), only ever answers
// "stored"; a blob it lacks is asked of the store, so a watch running
// behind never makes a stored blob look missing. A site is the one type
// internal/site describes; what the API and CI tools send are their own
// wire types, so what is stored here can change without breaking them.
package state
