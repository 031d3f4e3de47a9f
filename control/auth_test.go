package control

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/internal/natsauth"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/internal/testwait"
)

// TestEdgeCredsAndRevoke: control's embedded NATS refuses a client
// without creds; an edge provisioned through POST /v1/edges/{edge}/creds
// connects and heartbeats; DELETE /v1/edges/{edge} cuts it off within
// seconds and its creds stop working.
func TestEdgeCredsAndRevoke(t *testing.T) {
	dir, natsAddr := t.TempDir(), freeAddr(t)
	ctrl, token := startControl(t, dir, natsAddr)
	url := "nats://" + natsAddr

	if nc, err := nats.Connect(url, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("control's NATS admitted a client without creds")
	}
	for _, bad := range []string{"a.b", "edge-*", ">", "two%20words"} {
		if code, body := call(t, "POST", ctrl.url+"/v1/edges/"+bad+"/creds", token, ""); code != 422 {
			t.Errorf("creds for edge %q: %d %s, want 422", bad, code, body)
		}
	}
	code, creds := call(t, "POST", ctrl.url+"/v1/edges/edge-x/creds", token, "")
	if code != 200 {
		t.Fatalf("creds for edge-x: %d %s", code, creds)
	}
	credsFile := filepath.Join(t.TempDir(), "edge-x.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.UserCredentials(credsFile), nats.CustomInboxPrefix(natsauth.InboxPrefix(natsauth.RoleEdge, "edge-x")),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("edge-x connects with its creds: %v", err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	store, err := state.Bind(ctx, nc, state.EdgeAccess)
	if err != nil {
		t.Fatalf("edge-x binds: %v", err)
	}
	if err := store.Heartbeat(ctx, state.Edge{Name: "edge-x", HTTP: "http://127.0.0.9:80"}); err != nil {
		t.Fatalf("edge-x heartbeats: %v", err)
	}
	if code, body := call(t, "GET", ctrl.url+"/v1/edges/edge-x", token, ""); code != 200 {
		t.Fatalf("edge-x registered: %d %s", code, body)
	}

	if code, body := call(t, "DELETE", ctrl.url+"/v1/edges/edge-x", token, ""); code != 204 {
		t.Fatalf("delete edge-x: %d %s", code, body)
	}
	took := testwait.Within(t, "the revoked edge cut off", 5*time.Second, func() bool { return !nc.IsConnected() })
	t.Logf("revoked edge disconnected %s after DELETE answered", took.Round(time.Millisecond))
	if nc2, err := nats.Connect(url, nats.UserCredentials(credsFile), nats.MaxReconnects(0)); err == nil {
		nc2.Close()
		t.Error("revoked creds connect again")
	}
	if code, body := call(t, "GET", ctrl.url+"/v1/edges/edge-x", token, ""); code != 404 {
		t.Errorf("edge-x after delete: %d %s, want 404 (it could not register again)", code, body)
	}
}
