// Package natsauth is who may touch the shared state: NATS's own
// decentralized auth, with an operator, one account that holds every
// bucket and stream, the system account, and users minted per role as
// JWTs signed with nkeys, handed out as standard .creds files (so the
// `nats` CLI works with them too).
//
// An Authority keeps the seeds in a directory (mode 0700, files 0600)
// and is created on control's first start. It configures an embedded
// server (trusted operator plus the NATS-based "full" account resolver,
// the one every node of a cluster shares), mints creds, and revokes them
// by rewriting the account JWT's revocation list and sending it to the
// servers as a claims update.
//
// Each role's permissions name the exact JetStream API and KV subjects
// its job needs (permissions.go). No role but control and operator is
// given $JS.API.> or a direct get on a stream it may not read whole: a
// direct get names its subject in the request body, so subject rules on
// keys would not hold. Known limit, nats-server issue #8274: a user who
// may create a consumer on a stream can name any deliver subject; the
// server then publishes that stream's messages there. Edges may create
// consumers only on streams that control alone writes, and a message
// delivered that way keeps its own subject, so it cannot become a key of
// another bucket (TestDeliverSubjectCannotForgeKeys).
package natsauth
