package certs

import "crypto/tls"

// The TLS profile every edge listener offers: Mozilla's "intermediate"
// configuration (Server Side TLS guidelines 5.7), the one it recommends
// for a general-purpose server. TLS 1.2 with ECDHE key exchange and AEAD
// ciphers only, and TLS 1.3, whose three suites are all AEAD (Go does not
// let them be configured). Go's own defaults still offer the TLS 1.2
// ECDHE CBC suites (AES-128/256-CBC-SHA), which testssl.sh reports as
// potentially vulnerable to LUCKY13; the list here leaves them out. The
// profile's DHE suites are left out too: Go's TLS has no finite-field
// Diffie-Hellman, so no client that speaks TLS 1.2 loses anything it
// could have had.

// intermediateSuites are the TLS 1.2 cipher suites, in Mozilla's order.
// The server follows the client's preference among them, as the profile
// asks: every one is strong, and the client knows whether it has AES
// hardware.
func intermediateSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

// intermediateCurves are the key exchange groups: the profile's X25519,
// P-256 and P-384, after the post-quantum hybrid X25519MLKEM768 that Go
// offers by default on TLS 1.3. The hybrid is kept on purpose: it is at
// least as strong as X25519 alone (its X25519 half still protects the
// key), current browsers send it, and Mozilla's proposed next guidelines
// add it. Go uses it with TLS 1.3 only.
func intermediateCurves() []tls.CurveID {
	return []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384}
}

// baseTLSConfig is the profile with the given ALPN protocols, before any
// certificate source is attached.
func baseTLSConfig(nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CipherSuites:     intermediateSuites(),
		CurvePreferences: intermediateCurves(),
		NextProtos:       nextProtos,
	}
}
