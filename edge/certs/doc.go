// Package certs gives the edge's TLS listeners their certificates through
// certmagic, by each site's mode: ACME (obtained and renewed; on demand
// only for hostnames under a site's *.domain, never for whatever SNI a
// client sends), files from the operator (reloaded when they change; a
// bad new pair keeps the old one), or the development CA (devca.go).
// Certificates, keys and ACME accounts live in a certmagic.Storage: the
// edge's tls.storage directory, or for ACME, on an edge linked to
// control, the network's shared bucket (internal/certstore), so one
// order serves every edge; an order is placed only after the shared
// lock is confirmed, and mirror.go keeps a copy on disk that serves
// when NATS is unreachable at boot. profile.go is the TLS profile every
// listener offers (Mozilla's "intermediate").
//
// Invariants: a name no site serves gets no certificate and the TLS
// alert unrecognized_name, and nothing is minted for it; New makes no
// network calls (Run obtains what Update asked for, in the background).
//
// One lock: Manager.mu protects the file certificates and the names
// wanted and managed, and serializes Update.
package certs
