package edge

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/caddyserver/certmagic"

	"github.com/selfcdn/cdn/edge/certs"
	"github.com/selfcdn/cdn/internal/certstore"
)

// HTTPS: one TLS port serves HTTP/1.1 (fasthttp) and HTTP/2 (edge/h2) by
// ALPN over TCP, and HTTP/3 (quic-go) over UDP, every one through the
// same Handler; certificates come from edge/certs by each site's mode.

// acmeChallengePath starts the paths of ACME http-01 challenges.
const acmeChallengePath = "/.well-known/acme-challenge/"

// Listeners are the sockets an edge serves. HTTP is required; the others
// may be nil.
type Listeners struct {
	HTTP  net.Listener // HTTP/1.1 and h2c
	Admin net.Listener // /metrics, /healthz, /readyz
	HTTPS net.Listener // TLS: HTTP/1.1 and HTTP/2
	QUIC  net.PacketConn
}

// ListenHTTPS binds addr over TCP and, with http3, the same port over
// UDP (clients try h3 where Alt-Svc said h2 was). Port 0 picks a port
// free for both.
func ListenHTTPS(addr string, http3 bool) (net.Listener, net.PacketConn, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("tls listen: %w", err)
	}
	for range 10 {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("tls listen: %w", err)
		}
		if !http3 {
			return ln, nil, nil
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err == nil {
			return ln, pc, nil
		}
		ln.Close()
		if port != "0" {
			return nil, nil, fmt.Errorf("http3 listen: %w", err)
		}
	}
	return nil, nil, fmt.Errorf("tls listen %s: no port free over both TCP and UDP", addr)
}

// newCertManager builds the certificate manager, when HTTPS is on. With
// shared (an edge linked to control), ACME certificates live in the
// network's certificate bucket once the control link binds it.
func newCertManager(cfg Config, d Deps, shared *certstore.Storage) (*certs.Manager, error) {
	if cfg.TLS.Listen == "" {
		return nil, nil
	}
	var sharedStorage certmagic.Storage
	var sharedReady <-chan struct{}
	if shared != nil {
		sharedStorage, sharedReady = shared, shared.Bound()
	}
	return certs.New(certs.Config{
		Storage: cfg.storageDir(), DevCA: cfg.devCADir(),
		Shared: sharedStorage, SharedReady: sharedReady,
		ACME: certs.ACMEConfig{
			CA: cfg.TLS.ACME.CA, Email: cfg.TLS.ACME.Email, CARoot: cfg.TLS.ACME.CARoot,
			HTTPPort: cfg.TLS.ACME.HTTPPort, TLSPort: cfg.TLS.ACME.TLSPort,
		},
		NextProtos: []string{"h2", "http/1.1"},
		Logger:     d.Logger,
		Registry:   d.Registry,
	})
}

// certSites is what the certificate manager needs of the sites.
func certSites(sites []SiteConfig) []certs.Site {
	out := make([]certs.Site, 0, len(sites))
	for _, s := range sites {
		out = append(out, certs.Site{Name: s.Name, Hosts: s.Hosts, Mode: s.TLS, CertFile: s.CertFile, KeyFile: s.KeyFile})
	}
	return out
}

// altSvc is the Alt-Svc field that points h1 and h2 clients at HTTP/3
// on the TLS port (RFC 9114 §3.1.1).
func altSvc(port string) []string {
	return []string{`h3=":` + port + `"; ma=86400`}
}

// addSecure adds HTTPS-only response fields: Alt-Svc, and the site's HSTS.
func (h *Handler) addSecure(hdr http.Header, s *site, proto int) {
	if h.altSvc != nil && proto != 3 {
		hdr["Alt-Svc"] = h.altSvc
	}
	if s != nil && s.hsts != nil {
		hdr["Strict-Transport-Security"] = s.hsts
	}
}

// redirectHTTPS sends a plain-HTTP request to the same URL over HTTPS.
func (h *Handler) redirectHTTPS(w http.ResponseWriter, r *http.Request) outcome {
	host := r.Host
	if hp, _, err := net.SplitHostPort(host); err == nil {
		host = hp
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // an IPv6 literal
	}
	if h.httpsPort != "443" {
		host += ":" + h.httpsPort
	}
	hdr := w.Header()
	hdr["Location"] = []string{"https://" + host + r.URL.RequestURI()}
	hdr["Cache-Control"] = []string{"no-store"}
	hdr["Content-Type"] = []string{"text/plain; charset=utf-8"}
	w.WriteHeader(http.StatusPermanentRedirect)
	n, _ := fmt.Fprintln(w, "HTTPS only:", hdr["Location"][0])
	return outcome{status: http.StatusPermanentRedirect, result: resultPass, bytes: int64(n)}
}

// h3Server builds the HTTP/3 server, with QUIC limits against clients
// that open streams they never use or handshakes they never finish. The
// receive windows bound what a client uploads; what it downloads is
// bounded by the client's windows.
func (s *Server) h3Server(tc *tls.Config, port int) *http3.Server {
	t := s.cfg.TLS
	h3Conns := s.handler.metrics.h3Conns
	return &http3.Server{
		Handler:        s.handler,
		TLSConfig:      http3.ConfigureTLSConfig(tc),
		Port:           port,
		MaxHeaderBytes: int(s.cfg.MaxHeaderBytes),
		IdleTimeout:    s.cfg.IdleTimeout,
		QUICConfig: &quic.Config{
			HandshakeIdleTimeout:           t.HandshakeTimeout,
			MaxIdleTimeout:                 s.cfg.IdleTimeout,
			MaxIncomingStreams:             int64(t.MaxStreams),
			MaxIncomingUniStreams:          16,
			InitialStreamReceiveWindow:     512 << 10,
			MaxStreamReceiveWindow:         6 << 20,
			InitialConnectionReceiveWindow: 1 << 20,
			MaxConnectionReceiveWindow:     15 << 20,
		},
		// quic-go turns GSO off by itself on kernels, settings and
		// interfaces without it, which costs a system call per packet:
		// count which connections have it, so a slow edge shows why.
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			h3Conns.WithLabelValues(strconv.FormatBool(c.ConnectionState().GSO)).Inc()
			return ctx
		},
		Logger: slog.New(slog.DiscardHandler),
	}
}

// serveQUIC serves HTTP/3 on pc until Shutdown.
func serveQUIC(srv *http3.Server, pc net.PacketConn, errc chan<- error) {
	err := srv.Serve(pc)
	if err == http.ErrServerClosed || err == quic.ErrServerClosed {
		err = http.ErrServerClosed
	}
	errc <- err
}

// shutdownQUIC drains HTTP/3 connections within ctx, then closes the rest.
func shutdownQUIC(ctx context.Context, srv *http3.Server) {
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
}
