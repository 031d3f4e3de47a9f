// Package dashboard is the operator's pages, served by control under
// /dashboard/: the network live (every edge's health, drain state, load,
// requests, hit ratio, bandwidth, errors, purge version and releases,
// each second, from every request), charts of the last hour per site and
// region, sites, purges with their blast radius and per-edge progress,
// releases and rollback, drain, the GeoDNS explainer and tokens.
//
// Assets are plain HTML, CSS and a JavaScript module embedded in the
// binary (assets/): nothing is loaded from another host and nothing is
// built. Values reach the page as text only (textContent), and the
// Content-Security-Policy allows no inline script or style.
//
// Sign-in takes an API token; the session is a cookie sealed with
// AES-GCM under a key in control's data dir (dashboard.key), so it
// survives a restart of control, HttpOnly, SameSite=Strict, Secure over
// HTTPS, expiring (session_ttl, default 12h, never past the token's own
// expiry). Every request checks the token again, so revoking it ends its
// sessions. Actions go to the API (/dashboard/api/v1/... is /v1/... with
// the session's token), so the API's scope checks decide what a token may
// do: a read token sees everything and acts on nothing. Every action must
// carry the session's CSRF value (X-CSRF-Token, read by our page from
// /dashboard/session) and, when the browser names one, our Origin.
// `cdn up` mints a one-time sign-in link (POST /dashboard/links with an
// admin bearer token; the code lives in control's memory, link_ttl).
//
// Live data (hub.go) comes from watches of the edge registry, control's
// verdicts and the purge reports, a poll of releases and the purge log
// each second, and the edges' per-second figures on NATS
// (state.StatsSubject, published by edge/report.go). The last hour is
// kept in memory (series.go), one ring of 3,600 seconds per site, region
// and the whole network; Prometheus stays the long-term store. Pages get
// a snapshot each second over server-sent events; the browser reconnects
// by itself when control goes away and comes back.
//
// Two questions are asked over NATS request/reply, answered where the
// answer lives: the blast radius of a purge by every edge
// (state.CountSubject, edge/count.go: the objects on its disk tier, where
// every stored object is written, that the purge would newly match), and
// the GeoDNS explanation by geodns (state.ExplainSubject,
// geodns/explain.go), which holds the location database and the table
// its answers come from, so the explanation runs the answer's own
// ranking rather than a copy of it in control.
package dashboard
