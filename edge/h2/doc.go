// Package h2 serves HTTP/2 connections (RFC 9113) to an http.Handler.
//
// net/http's HTTP/2 server sends every response's HEADERS frame from a
// goroutine of its own, hands each frame to its serve loop over channels,
// and flushes separately, so a small response costs several goroutine
// switches and two write system calls; for a cache answering tens of
// thousands of small hits a second that is most of its CPU. Here the
// handler's goroutine encodes and writes its own frames under the
// connection's write lock, so a small response is one HEADERS and one
// DATA frame in one write. Framing, HPACK and header field validation are
// golang.org/x/net/http2's.
//
// Locks. conn.mu guards a connection's write side (the output buffer,
// HPACK encoder, flow-control windows, the streams' send state; cond
// waits on it). Server.mu guards the set of connections and listeners.
// tarpit.mu guards the held connections. No two are ever held together:
// Server.stop copies the connections out before acting on them, and a
// cut-off connection is handed to the tarpit after conn.mu is released.
package h2
