// Package natsembed runs a NATS server with JetStream inside the process:
// the default engine of `cdn control`, and of tests.
package natsembed

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config is an embedded server's settings.
type Config struct {
	// Listen is the client address, host:port; port 0 or -1 picks one.
	Listen string
	// Dir holds JetStream's data.
	Dir string
	// Name names the server (in a cluster, each must differ).
	Name string
	// Cluster, when set, is this node's cluster listen address, and
	// Routes the other nodes' cluster addresses ("nats://host:port").
	Cluster string
	Routes  []string
	// Auth, when set, is the only authority whose users may connect
	// (a *natsauth.Authority); nil lets anyone in (tests that are not
	// about auth).
	Auth Authority
	// TLS, when its files are set, makes clients connect over TLS.
	TLS TLSFiles
}

// Authority configures a server to admit only its users. An interface,
// so that this package (and the test servers every package uses) does
// not depend on the state's permission tables.
type Authority interface {
	Configure(opts *server.Options, resolverDir string) error
}

// TLSFiles are PEM files: the server's certificate and key, and the CA
// that signed them (given to clients so they can verify the server).
type TLSFiles struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
}

// Enabled says whether TLS is configured.
func (t TLSFiles) Enabled() bool { return t.Cert != "" || t.Key != "" }

// Start starts the server and waits until it accepts clients.
func Start(cfg Config) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats listen %q: bad port", cfg.Listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: cfg.Name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.Dir,
		NoSigs:     true, // the process handles its own signals
		NoLog:      true,
	}
	if cfg.Auth != nil {
		if err := cfg.Auth.Configure(opts, filepath.Join(cfg.Dir, "accounts")); err != nil {
			return nil, fmt.Errorf("nats auth: %w", err)
		}
	}
	if cfg.TLS.Enabled() {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLS.Cert, KeyFile: cfg.TLS.Key})
		if err != nil {
			return nil, fmt.Errorf("nats tls: %w", err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSTimeout = tc, true, 2
	}
	if cfg.Cluster != "" {
		ch, cp, err := net.SplitHostPort(cfg.Cluster)
		if err != nil {
			return nil, fmt.Errorf("nats cluster listen %q: %w", cfg.Cluster, err)
		}
		opts.Cluster.Name = "cdn"
		opts.Cluster.Host = ch
		opts.Cluster.Port, _ = strconv.Atoi(cp)
		opts.Routes = server.RoutesFromStr(strings.Join(cfg.Routes, ","))
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats server on %s not ready after 10s", cfg.Listen)
	}
	return ns, nil
}
