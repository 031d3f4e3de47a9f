// Package natstest runs a throwaway NATS server with JetStream for tests:
// a random loopback port, data in the test's temp dir, shut down with the
// test.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/internal/natsembed"
)

// Server is a running test server.
type Server struct {
	*server.Server
	// URL is the client URL.
	URL string
}

// Start runs a server until the test ends; dir "" uses a new temp dir.
// Restarting on the same dir keeps JetStream's data.
func Start(t testing.TB, listen, dir string) *Server {
	t.Helper()
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if dir == "" {
		dir = t.TempDir()
	}
	ns, err := natsembed.Start(natsembed.Config{Listen: listen, Dir: dir, Name: "test"})
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return &Server{Server: ns, URL: ns.ClientURL()}
}

// Connect opens a client connection closed with the test.
func Connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}
