// Package origin talks to origin servers.
//
// Fetcher is a pooled HTTP client with connect, header and idle-body
// timeouts, one retry of idempotent requests that failed before any
// response, and errors that say whether the origin was slow (504) or
// broken (502).
//
// Pool and Group add origin groups on top (issue 22): a site's primary and
// backup origins, each with its own connection pool, Host header and TLS
// server name, a circuit breaker fed by real traffic (passive health) and
// optional health checks (active health). Group.Do fails over to the next
// origin on connect errors, timeouts, garbage and configured statuses, and
// never sends a non-idempotent request to a second origin once the first
// may have seen it.
//
// The pool outlives configuration reloads: a target that stays in the
// configuration keeps its connections, breaker and health; Pool.Retain
// stops the health checks and closes the connections of targets no live
// group uses any more.
//
// Locks: Pool.mu and a breaker's mu are never held together; a checker's
// up/down state is atomic, and a Group is immutable once built.
package origin
