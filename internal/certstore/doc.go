// Package certstore is a certmagic.Storage over a JetStream KV bucket,
// so every edge of the network shares one certificate per name, one
// ACME account, the challenge tokens (any edge answers the CA's http-01
// request) and the locks that make one ACME order serve them all.
//
// Locks (lock.go) exclude for real, across processes and regions:
//
//   - A lock is a key created only if absent (KV create). Its revision
//     is the fencing token; JetStream revisions only grow, so a later
//     holder always has a larger token.
//   - The key carries a server-side TTL (JetStream per-message TTL), so
//     a holder that died or was cut off loses it after Config.LockTTL
//     whatever the clocks of the edges say. A live holder renews it
//     every TTL/3 by compare-and-swap on its revision; a failed swap
//     means another process holds it now, and the lock is lost.
//   - A certificate's files written under its lock are fenced: the
//     write first renews the lock (compare-and-swap, so it proves the
//     lock is still ours), then writes the file only if the file's
//     stored fence is not newer than ours (compare-and-swap on the
//     file's revision). A holder that lost its lock writes nothing.
//   - Waiting for a lock retries the create; nothing polls the data.
//
// Before certmagic places an order it renews the lease
// (RenewLockLease): a holder that lost its lock waits to take it again,
// then finds the certificate another edge stored and orders nothing.
//
// Two locks: Storage.mu protects the held locks; heldLock.mu protects
// one lock's revision and state. Storage.mu is taken before heldLock.mu,
// never the other way round.
package certstore
