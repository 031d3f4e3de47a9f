// Package api is control's HTTP API, JSON under /v1 (openapi.yaml in this
// folder): sites, edges (list, drain, NATS creds, removal), health,
// purges (with ?wait= for the edges), pushed releases (missing blobs,
// uploads, commits, activation) and tokens.
//
// Every request carries a bearer token whose scopes decide what it may
// do (admin, read, purge:<site>, push:<site>); writes also take from the
// token's rate bucket (limits.go) before the handler runs. Handlers
// return errors, and fail is the one place an error becomes a status and
// a JSON {"error":{"code","message"}} (a bad field is named in the
// message). A site is the one
// type internal/site describes, validated by its own Validate, so the API
// and an edge's YAML accept the same sites.
//
// Locks, none held while another is taken: API.sitesMu serializes site
// writes, so a host check and the write it allows are one step in this
// process (it is held across the KV reads and the write); Progress.mu
// protects the edges' purge reports; writeLimiter.mu the token buckets.
package api
