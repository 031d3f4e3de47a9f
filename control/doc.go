// Package control is the control plane: the API (control/api) over the
// shared state in NATS JetStream (internal/state; NATS embedded by
// default, with its auth from internal/natsauth), the health checks that
// decide which edges are up, and the collection of old pushed releases.
//
// It keeps no state of its own beyond what it can rebuild: JetStream is
// the one copy, so several control processes over one NATS can sit
// behind a load balancer (a check's streak counts, kept in memory, come
// back within a few rounds).
//
// Locks: checker.mu (health.go) protects the streak counts; edgeCreds.mu
// (auth.go) the system-account connection, and is held while it is
// made. Neither is held while the other is taken, and nothing else is
// locked under them.
package control
