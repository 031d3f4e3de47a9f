package origin

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// newTransport returns the connection pool for one origin endpoint. A
// non-nil tlsConf names the TLS server (SNI) and the roots to trust.
func newTransport(cfg Config, tlsConf *tls.Config) *http.Transport {
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:            dialer.DialContext,
		TLSClientConfig:        tlsConf,
		MaxIdleConns:           cfg.MaxIdleConns * 4,
		MaxIdleConnsPerHost:    cfg.MaxIdleConns,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  cfg.HeaderTimeout,
		TLSHandshakeTimeout:    cfg.ConnectTimeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: cfg.MaxHeaderBytes,
		// The edge caches what the origin sends, encoded or not, and
		// passes the client's Accept-Encoding on; Go must not add its own
		// and decode behind our back.
		DisableCompression: true,
		ForceAttemptHTTP2:  true,
	}
}

// newClient returns a client over tr that never follows redirects:
// they are the client's business, and a cache stores them.
func newClient(tr http.RoundTripper) *http.Client {
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
