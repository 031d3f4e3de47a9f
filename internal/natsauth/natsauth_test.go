package natsauth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/internal/certstore"
	"github.com/selfcdn/cdn/internal/natsauth"
	"github.com/selfcdn/cdn/internal/natsauth/authtest"
	"github.com/selfcdn/cdn/internal/natsembed"
	"github.com/selfcdn/cdn/internal/natstest"
	"github.com/selfcdn/cdn/internal/state"
	"github.com/selfcdn/cdn/internal/testwait"
)

// asyncErrors collects the errors the server sends a connection outside
// any request (permission violations of publishes and subscriptions).
func asyncErrors() (nats.Option, <-chan error) {
	errc := make(chan error, 64)
	return nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errc <- err:
		default:
		}
	}), errc
}

// seed starts an authenticated server and fills the state as control
// does, returning the server, the authority and control's store.
func seed(t *testing.T) (*natstest.Server, *natsauth.Authority, *state.Store) {
	t.Helper()
	srv, auth := authtest.Start(t, natsembed.Config{})
	nc := authtest.Connect(t, srv.URL, auth, natsauth.RoleControl, "")
	ctx := t.Context()
	store, err := state.Open(ctx, nc, state.Options{})
	if err != nil {
		t.Fatalf("control opens the state: %v", err)
	}
	if err := store.EnsurePeerSecret(ctx); err != nil {
		t.Fatalf("control makes the peer secret: %v", err)
	}
	if _, err := store.PutSite(ctx, state.Site{Name: "demo", Hosts: []string{"demo.test"}, Origin: "http://127.0.0.1:1"}, true); err != nil {
		t.Fatalf("control puts a site: %v", err)
	}
	if err := store.PutToken(ctx, state.Token{ID: "t1", Hash: "00", Scopes: []string{"admin"}}); err != nil {
		t.Fatalf("control puts a token: %v", err)
	}
	if _, _, err := store.PublishPurge(ctx, "demo", "", []byte(`{"urls":["/a"]}`)); err != nil {
		t.Fatalf("control publishes a purge: %v", err)
	}
	blob := []byte("hello, pushed world")
	sum := sha256.Sum256(blob)
	if _, _, err := store.PutBlob(ctx, hex.EncodeToString(sum[:]), bytes.NewReader(blob)); err != nil {
		t.Fatalf("control puts a blob: %v", err)
	}
	if err := store.SetLive(ctx, state.Live{Site: "demo", Release: 1, Manifest: hex.EncodeToString(sum[:])}); err != nil {
		t.Fatalf("control sets a release live: %v", err)
	}
	if err := certstore.CreateBucket(ctx, nc, 1); err != nil {
		t.Fatalf("control creates the certificates bucket: %v", err)
	}
	return srv, auth, store
}

// TestRolesDoTheirJobs runs what each part does with the state, as that
// part's user, and fails on any permission the server refuses.
func TestRolesDoTheirJobs(t *testing.T) {
	srv, auth, _ := seed(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	onErr, errc := asyncErrors()
	edge, err := state.Bind(ctx, authtest.Connect(t, srv.URL, auth, natsauth.RoleEdge, "edge-a", onErr), state.EdgeAccess)
	if err != nil {
		t.Fatalf("edge binds: %v", err)
	}
	if err := edge.Heartbeat(ctx, state.Edge{Name: "edge-a"}); err != nil {
		t.Errorf("edge heartbeats: %v", err)
	}
	if err := edge.ReportPurgeApplied(ctx, state.PurgeApplied{Edge: "edge-a", Version: 1}); err != nil {
		t.Errorf("edge reports a purge applied: %v", err)
	}
	if err := edge.ReportReleases(ctx, state.EdgeReleases{Edge: "edge-a"}); err != nil {
		t.Errorf("edge reports its releases: %v", err)
	}
	if _, err := edge.PurgeLog(ctx); err != nil {
		t.Errorf("edge reads the purge log's bounds: %v", err)
	}
	watchOnce(t, "edge watches sites", func(ctx context.Context, done func()) error {
		return edge.WatchSites(ctx, func([]state.Site) { done() })
	})
	watchOnce(t, "edge watches live releases", func(ctx context.Context, done func()) error {
		return edge.WatchLive(ctx, func(map[string]state.Live) { done() })
	})
	watchOnce(t, "edge watches the edge registry (its region's tier)", func(ctx context.Context, done func()) error {
		return edge.WatchEdges(ctx, func(map[string]state.Edge) { done() })
	})
	watchOnce(t, "edge watches edge status", func(ctx context.Context, done func()) error {
		return edge.WatchEdgeStatuses(ctx, func(map[string]state.EdgeStatus) { done() })
	})
	if secret, err := edge.PeerSecret(ctx); err != nil || len(secret) != 32 {
		t.Errorf("edge reads the peer secret: %d bytes, %v", len(secret), err)
	}
	watchOnce(t, "edge follows purges", func(ctx context.Context, done func()) error {
		return edge.FollowPurges(ctx, 1, func(state.Purge, uint64) error { done(); return nil })
	})
	sum := sha256.Sum256([]byte("hello, pushed world"))
	r, _, err := edge.OpenBlob(ctx, hex.EncodeToString(sum[:]))
	if err != nil {
		t.Errorf("edge opens a blob: %v", err)
	} else {
		b, err := io.ReadAll(r)
		r.Close()
		if err != nil || string(b) != "hello, pushed world" {
			t.Errorf("edge reads a blob: %q, %v", b, err)
		}
	}

	// The shared certificates: every file and lock certmagic uses.
	certs := certstore.New(certstore.Config{Owner: "edge-a"})
	if err := certs.Bind(ctx, authtest.Connect(t, srv.URL, auth, natsauth.RoleEdge, "edge-a", onErr)); err != nil {
		t.Fatalf("edge binds the certificates bucket: %v", err)
	}
	const keyFile = "certificates/ca/demo.test/demo.test.key"
	if err := certs.Lock(ctx, "issue_cert_demo.test"); err != nil {
		t.Errorf("edge takes a certificate lock: %v", err)
	}
	if err := certs.Store(ctx, keyFile, []byte("KEY")); err != nil {
		t.Errorf("edge stores a certificate under its lock: %v", err)
	}
	if err := certs.RenewLockLease(ctx, "issue_cert_demo.test", time.Minute); err != nil {
		t.Errorf("edge renews its lock: %v", err)
	}
	if err := certs.Unlock(ctx, "issue_cert_demo.test"); err != nil {
		t.Errorf("edge releases a certificate lock: %v", err)
	}
	if err := certs.Store(ctx, "acme/ca/challenge_tokens/demo.test.json", []byte("{}")); err != nil {
		t.Errorf("edge stores a challenge token: %v", err)
	}
	if b, err := certs.Load(ctx, keyFile); err != nil || string(b) != "KEY" {
		t.Errorf("edge loads a certificate: %q, %v", b, err)
	}
	if keys, err := certs.List(ctx, "certificates", true); err != nil || len(keys) == 0 {
		t.Errorf("edge lists certificates: %v, %v", keys, err)
	}
	if err := certs.Delete(ctx, "acme"); err != nil {
		t.Errorf("edge deletes a challenge token: %v", err)
	}
	certs.Close(ctx)

	onErrG, errcG := asyncErrors()
	geo, err := state.Bind(ctx, authtest.Connect(t, srv.URL, auth, natsauth.RoleGeoDNS, "", onErrG), state.GeoDNSAccess)
	if err != nil {
		t.Fatalf("geodns binds: %v", err)
	}
	watchOnce(t, "geodns watches sites", func(ctx context.Context, done func()) error {
		return geo.WatchSites(ctx, func([]state.Site) { done() })
	})
	watchOnce(t, "geodns watches edges", func(ctx context.Context, done func()) error {
		return geo.WatchEdges(ctx, func(map[string]state.Edge) { done() })
	})
	watchOnce(t, "geodns watches edge status", func(ctx context.Context, done func()) error {
		return geo.WatchEdgeStatuses(ctx, func(map[string]state.EdgeStatus) { done() })
	})
	liveFeedsWork(t, srv.URL, auth, onErr, onErrG)
	for name, c := range map[string]<-chan error{"edge": errc, "geodns": errcG} {
		select {
		case err := <-c:
			t.Errorf("%s was refused something its job needs: %v", name, err)
		default:
		}
	}
}

// liveFeedsWork runs the dashboard's live feeds as each role: edge-a
// publishes its stats and answers a count asked of it, geodns answers an
// explanation, and control reads and asks.
func liveFeedsWork(t *testing.T, url string, auth *natsauth.Authority, onErrEdge, onErrGeo nats.Option) {
	t.Helper()
	onErrC, errcC := asyncErrors()
	control := authtest.Connect(t, url, auth, natsauth.RoleControl, "", onErrC)
	edge := authtest.Connect(t, url, auth, natsauth.RoleEdge, "edge-a", onErrEdge)
	geo := authtest.Connect(t, url, auth, natsauth.RoleGeoDNS, "", onErrGeo)
	stats, err := control.SubscribeSync(state.StatsSubjectPrefix + "*")
	if err != nil {
		t.Fatal(err)
	}
	control.Flush()
	if err := edge.Publish(state.StatsSubject("edge-a"), []byte(`{"edge":"edge-a"}`)); err != nil {
		t.Errorf("edge publishes its stats: %v", err)
	}
	if m, err := stats.NextMsg(5 * time.Second); err != nil || m.Subject != state.StatsSubject("edge-a") {
		t.Errorf("control reads edge-a's stats: %v", err)
	}
	for _, answerer := range []struct {
		who     string
		nc      *nats.Conn
		subject string
	}{
		{"edge", edge, state.CountSubject("edge-a")},
		{"geodns", geo, state.ExplainSubject},
	} {
		sub, err := answerer.nc.Subscribe(answerer.subject, func(m *nats.Msg) { m.Respond([]byte("answer")) })
		if err != nil {
			t.Fatal(err)
		}
		answerer.nc.Flush()
		if m, err := control.Request(answerer.subject, []byte("{}"), 5*time.Second); err != nil || string(m.Data) != "answer" {
			t.Errorf("control asks %s on %s: %v", answerer.who, answerer.subject, err)
		}
		sub.Unsubscribe()
	}
	select {
	case err := <-errcC:
		t.Errorf("control was refused something the live feeds need: %v", err)
	default:
	}
}

// watchOnce runs watch until it calls done once, failing after 5s.
func watchOnce(t *testing.T, what string, watch func(ctx context.Context, done func()) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	called := false
	err := watch(ctx, func() {
		called = true
		cancel()
	})
	if !called {
		t.Errorf("%s: never called back (%v)", what, err)
	}
}

// TestRolesCannot tries, as each role, what that role must not do.
func TestRolesCannot(t *testing.T) {
	srv, auth, control := seed(t)
	// request publishes a request and reports whether the server let it
	// through: an answer, or no answer and no violation (a publish no one
	// answers), is let through.
	type attempt struct {
		role    natsauth.Role
		name    string
		what    string
		subject string
		body    string
	}
	tests := []attempt{
		{natsauth.RoleEdge, "edge-a", "write the tokens bucket", "$KV.cdn_tokens.forged", `{"id":"forged","hash":"00","scopes":["admin"]}`},
		{natsauth.RoleEdge, "edge-a", "write another edge's registry", "$KV.cdn_edges.edge-b", `{"name":"edge-b"}`},
		{natsauth.RoleEdge, "edge-a", "write another edge's purge report", "$KV.cdn_purge_applied.edge-b", `{"edge":"edge-b","version":99}`},
		{natsauth.RoleEdge, "edge-a", "write another edge's release status", "$KV.cdn_edge_releases.edge-b", `{}`},
		{natsauth.RoleEdge, "edge-a", "write control's verdict on itself", "$KV.cdn_edge_status.edge-a", `{"health":"up"}`},
		{natsauth.RoleEdge, "edge-a", "write a site", "$KV.cdn_sites.evil", `{"name":"evil","hosts":["*"]}`},
		{natsauth.RoleEdge, "edge-a", "publish a purge", "cdn.purge.demo", `{"all":true}`},
		{natsauth.RoleEdge, "edge-a", "read a token (direct get)", "$JS.API.DIRECT.GET.KV_cdn_tokens.$KV.cdn_tokens.t1", ""},
		{natsauth.RoleEdge, "edge-a", "read a token (message get)", "$JS.API.STREAM.MSG.GET.KV_cdn_tokens", `{"last_by_subj":"$KV.cdn_tokens.t1"}`},
		{natsauth.RoleEdge, "edge-a", "replace the peer secret", "$KV.cdn_peer.secret", `forged`},
		{natsauth.RoleEdge, "edge-a", "watch the tokens bucket", "$JS.API.CONSUMER.CREATE.KV_cdn_tokens", `{"stream_name":"KV_cdn_tokens","config":{"ack_policy":"none"}}`},
		{natsauth.RoleEdge, "edge-a", "delete a stream", "$JS.API.STREAM.DELETE.KV_cdn_sites", ""},
		{natsauth.RoleEdge, "edge-a", "create a stream", "$JS.API.STREAM.CREATE.EVIL", `{"name":"EVIL","subjects":["evil"]}`},
		{natsauth.RoleEdge, "edge-a", "purge a bucket's stream", "$JS.API.STREAM.PURGE.KV_cdn_sites", ""},
		{natsauth.RoleEdge, "edge-a", "use any JetStream API", "$JS.API.INFO", ""},
		{natsauth.RoleEdge, "edge-a", "create the certificates bucket", "$JS.API.STREAM.CREATE.KV_cdn_certs", `{"name":"KV_cdn_certs","subjects":["$KV.cdn_certs.>"]}`},
		{natsauth.RoleEdge, "edge-a", "change the certificates bucket", "$JS.API.STREAM.UPDATE.KV_cdn_certs", `{"name":"KV_cdn_certs","subjects":["$KV.cdn_certs.>"],"max_age":1}`},
		{natsauth.RoleEdge, "edge-a", "purge the certificates bucket", "$JS.API.STREAM.PURGE.KV_cdn_certs", ""},
		{natsauth.RoleEdge, "edge-a", "publish another edge's stats", "cdn.stats.edge-b", `{"edge":"edge-b"}`},
		{natsauth.RoleEdge, "edge-a", "ask another edge for a count", "cdn.count.edge-b", `{}`},
		{natsauth.RoleEdge, "edge-a", "ask geodns for an explanation", "cdn.geodns.explain", `{}`},
		{natsauth.RoleGeoDNS, "", "publish an edge's stats", "cdn.stats.edge-a", `{"edge":"edge-a"}`},
		{natsauth.RoleGeoDNS, "", "ask an edge for a count", "cdn.count.edge-a", `{}`},
		{natsauth.RoleGeoDNS, "", "heartbeat as an edge", "$KV.cdn_edges.edge-a", `{"name":"edge-a"}`},
		{natsauth.RoleGeoDNS, "", "write a site", "$KV.cdn_sites.evil", `{}`},
		{natsauth.RoleGeoDNS, "", "write edge status", "$KV.cdn_edge_status.edge-a", `{"health":"down"}`},
		{natsauth.RoleGeoDNS, "", "publish a purge", "cdn.purge.demo", `{"all":true}`},
		{natsauth.RoleGeoDNS, "", "read a token", "$JS.API.DIRECT.GET.KV_cdn_tokens.$KV.cdn_tokens.t1", ""},
		{natsauth.RoleGeoDNS, "", "read blobs", "$JS.API.STREAM.INFO.OBJ_cdn_blobs", ""},
		{natsauth.RoleGeoDNS, "", "read the peer secret", "$JS.API.DIRECT.GET.KV_cdn_peer.$KV.cdn_peer.secret", ""},
		{natsauth.RoleGeoDNS, "", "delete a stream", "$JS.API.STREAM.DELETE.KV_cdn_sites", ""},
		{natsauth.RoleGeoDNS, "", "read a private key (direct get)", "$JS.API.DIRECT.GET.KV_cdn_certs.$KV.cdn_certs.d/certificates/ca/demo.test/demo.test.key", ""},
		{natsauth.RoleGeoDNS, "", "read a private key (message get)", "$JS.API.STREAM.MSG.GET.KV_cdn_certs", `{"last_by_subj":"$KV.cdn_certs.d/certificates/ca/demo.test/demo.test.key"}`},
		{natsauth.RoleGeoDNS, "", "watch the certificates bucket", "$JS.API.CONSUMER.CREATE.KV_cdn_certs", `{"stream_name":"KV_cdn_certs","config":{"ack_policy":"none"}}`},
		{natsauth.RoleGeoDNS, "", "take a certificate lock", "$KV.cdn_certs.l/issue_cert_demo.test", `{}`},
		{natsauth.RoleGeoDNS, "", "write a certificate", "$KV.cdn_certs.d/certificates/ca/demo.test/demo.test.crt", `{}`},
		{natsauth.RoleControl, "", "send account claims (revoke users)", "$SYS.REQ.CLAIMS.UPDATE", "x"},
		{natsauth.RoleControl, "", "publish outside the state's subjects", "anything.else", "x"},
	}
	for _, tt := range tests {
		t.Run(string(tt.role)+" cannot "+tt.what, func(t *testing.T) {
			onErr, errc := asyncErrors()
			nc := authtest.Connect(t, srv.URL, auth, tt.role, tt.name, onErr)
			// A publish with a reply subject, as a request: the server
			// says at once when it refuses it.
			err := nc.PublishRequest(tt.subject, nc.NewInbox(), []byte(tt.body))
			if err == nil {
				err = nc.Flush()
			}
			if !refused(err, errc) {
				t.Errorf("%s %q: the server let it through (%v)", tt.role, tt.subject, err)
			}
		})
	}
	// Nothing the attempts sent was stored.
	if _, err := control.Token(t.Context(), "forged"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("forged token: %v, want not found", err)
	}
	if _, _, err := control.Site(t.Context(), "evil"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("site written by an edge: %v, want not found", err)
	}
	if _, err := control.Edge(t.Context(), "edge-b"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("edge-b's registry written by edge-a: %v, want not found", err)
	}

	// Subscriptions outside a user's own inbox are refused: replies to
	// control carry token records.
	for _, sub := range []struct {
		role          natsauth.Role
		name, subject string
	}{
		{natsauth.RoleEdge, "edge-a", "_INBOX.>"},
		{natsauth.RoleEdge, "edge-a", "_INBOX.control.>"},
		{natsauth.RoleEdge, "edge-a", "_INBOX.edge.edge-b.>"},
		{natsauth.RoleEdge, "edge-a", "$KV.>"},
		{natsauth.RoleGeoDNS, "", "cdn.purge.>"},
		{natsauth.RoleEdge, "edge-a", "cdn.stats.>"},
		{natsauth.RoleEdge, "edge-a", "cdn.count.edge-b"},
		{natsauth.RoleEdge, "edge-a", "cdn.count.*"},
		{natsauth.RoleEdge, "edge-a", "cdn.geodns.explain"},
		{natsauth.RoleGeoDNS, "", "cdn.stats.*"},
		{natsauth.RoleGeoDNS, "", "cdn.count.edge-a"},
		{natsauth.RoleControl, "", "cdn.count.edge-a"},
		{natsauth.RoleControl, "", "_INBOX.edge.edge-a.>"},
		{natsauth.RoleControl, "", "$KV.cdn_tokens.>"},
	} {
		onErr, errc := asyncErrors()
		nc := authtest.Connect(t, srv.URL, auth, sub.role, sub.name, onErr)
		if _, err := nc.SubscribeSync(sub.subject); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		select {
		case err := <-errc:
			if !errors.Is(err, nats.ErrPermissionViolation) && !strings.Contains(err.Error(), "Permissions Violation") {
				t.Errorf("%s subscribing to %s: %v, want a permissions violation", sub.role, sub.subject, err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%s subscribed to %s: no violation", sub.role, sub.subject)
		}
	}
}

// refused reports whether a request came back with, or caused, a
// permissions violation.
func refused(err error, async <-chan error) bool {
	if err != nil && (errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(err.Error(), "Permissions Violation")) {
		return true
	}
	select {
	case aerr := <-async:
		return strings.Contains(aerr.Error(), "Permissions Violation")
	case <-time.After(2 * time.Second):
		return false
	}
}

// TestBadCredsRefused: no creds, creds from another authority (forged),
// and expired creds cannot connect.
func TestBadCredsRefused(t *testing.T) {
	srv, auth := authtest.Start(t, natsembed.Config{})
	other, err := natsauth.Open(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts []nats.Option
	}{
		{"no credentials", nil},
		{"forged: signed by another operator's account", []nats.Option{nats.UserCredentials(authtest.CredsFile(t, other, natsauth.RoleOperator, "", natsauth.CredsOptions{}))}},
		{"expired", []nats.Option{nats.UserCredentials(authtest.CredsFile(t, auth, natsauth.RoleEdge, "edge-a",
			natsauth.CredsOptions{Expires: time.Now().Add(-time.Hour)}))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc, err := nats.Connect(srv.URL, append(tt.opts, nats.MaxReconnects(0), nats.Timeout(2*time.Second))...)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, nats.ErrAuthorization) && !errors.Is(err, nats.ErrAuthExpired) &&
				!strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("connect: %v, want an authorization error", err)
			}
		})
	}
	// The right creds do connect, so the refusals above are about them.
	authtest.Connect(t, srv.URL, auth, natsauth.RoleEdge, "edge-a")
}

// TestRevokedEdgeCutOff: revoking an edge disconnects it within seconds,
// and its creds no longer connect; other edges stay.
func TestRevokedEdgeCutOff(t *testing.T) {
	srv, auth := authtest.Start(t, natsembed.Config{})
	closed := make(chan struct{})
	credsA := authtest.CredsFile(t, auth, natsauth.RoleEdge, "edge-a", natsauth.CredsOptions{})
	edgeA, err := nats.Connect(srv.URL, nats.UserCredentials(credsA), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }), nats.DisconnectErrHandler(func(*nats.Conn, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer edgeA.Close()
	edgeB := authtest.Connect(t, srv.URL, auth, natsauth.RoleEdge, "edge-b")

	sysCreds, err := auth.SystemCreds()
	if err != nil {
		t.Fatal(err)
	}
	sysFile := filepath.Join(t.TempDir(), "sys.creds")
	if err := os.WriteFile(sysFile, sysCreds, 0o600); err != nil {
		t.Fatal(err)
	}
	sys, err := nats.Connect(srv.URL, nats.UserCredentials(sysFile))
	if err != nil {
		t.Fatalf("system user connects: %v", err)
	}
	defer sys.Close()
	token, n, err := auth.Revoke(natsauth.RoleEdge, "edge-a")
	if err != nil || n != 1 {
		t.Fatalf("Revoke = %d, %v; want 1 user", n, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := natsauth.Publish(ctx, sys, token); err != nil {
		t.Fatalf("publish the revocation: %v", err)
	}
	start := time.Now()
	testwait.Within(t, "revoked edge disconnected", 5*time.Second, func() bool { return !edgeA.IsConnected() })
	t.Logf("revoked edge cut off %s after the update", time.Since(start).Round(time.Millisecond))
	if _, err := nats.Connect(srv.URL, nats.UserCredentials(credsA), nats.MaxReconnects(0)); err == nil {
		t.Error("revoked creds connect again")
	}
	if !edgeB.IsConnected() {
		t.Error("edge-b lost its connection when edge-a was revoked")
	}
	// New creds for the same name (a re-provisioned host) work.
	authtest.Connect(t, srv.URL, auth, natsauth.RoleEdge, "edge-a")
}

// TestDeliverSubjectCannotForgeKeys: nats-server lets a user who may
// create a consumer name any deliver subject (nats-server#8274). An edge
// that points a consumer of a stream it may read (pushed blobs, whose
// bytes a push token chooses) at a key of the tokens bucket must not
// create a token: the message keeps its own subject.
func TestDeliverSubjectCannotForgeKeys(t *testing.T) {
	srv, auth, control := seed(t)
	edge := authtest.Connect(t, srv.URL, auth, natsauth.RoleEdge, "edge-a")
	for _, stream := range []string{"OBJ_cdn_blobs", "KV_cdn_sites", "CDN_PURGES"} {
		req := `{"stream_name":"` + stream + `","config":{"deliver_subject":"$KV.cdn_tokens.forged","deliver_policy":"all","ack_policy":"none"}}`
		msg, err := edge.Request("$JS.API.CONSUMER.CREATE."+stream, []byte(req), 2*time.Second)
		if err != nil {
			t.Fatalf("create consumer on %s: %v", stream, err)
		}
		t.Logf("consumer on %s delivering to the tokens bucket: %s", stream, msg.Data)
	}
	// Interest on the deliver subject starts delivery: a literal
	// subscription by anyone in the account (here control's).
	nc := authtest.Connect(t, srv.URL, auth, natsauth.RoleOperator, "")
	sub, err := nc.SubscribeSync("$KV.cdn_tokens.forged")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if _, err := sub.NextMsg(3 * time.Second); err != nil {
		t.Logf("no delivery reached the subscriber: %v", err)
	}
	if _, err := control.Token(t.Context(), "forged"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("token %q after deliveries into the tokens bucket: %v, want not found", "forged", err)
	}
	js, _ := nc.JetStream()
	if si, err := js.StreamInfo("KV_cdn_tokens"); err == nil {
		t.Logf("tokens stream after the deliveries: %d messages, subjects %v", si.State.Msgs, si.State.NumSubjects)
	}
	tokens, err := control.Tokens(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 1 || tokens[0].ID != "t1" {
		t.Errorf("tokens after deliveries: %+v, want only t1", tokens)
	}
}

// TestServerConfig: the block `cdn control nats-config` prints makes a
// stock nats-server (from its config file) trust the authority: control's
// creds open the state there, and a client without creds is refused.
func TestServerConfig(t *testing.T) {
	auth, err := natsauth.Open(filepath.Join(t.TempDir(), "auth"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	block, err := auth.ServerConfig(filepath.Join(dir, "accounts"))
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nats.conf")
	text := "listen: 127.0.0.1:-1\njetstream: {store_dir: " + strconv.Quote(filepath.Join(dir, "js")) + "}\n" + block
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server reads the config: %v\n%s", err, text)
	}
	opts.NoLog, opts.NoSigs = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	if nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("a client without creds was admitted")
	}
	nc := authtest.Connect(t, ns.ClientURL(), auth, natsauth.RoleControl, "")
	if _, err := state.Open(t.Context(), nc, state.Options{}); err != nil {
		t.Errorf("control opens the state on the configured server: %v", err)
	}
}

// TestSeedFilesPrivate: seeds are written 0600, and a seed others can
// read is refused rather than used.
func TestSeedFilesPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	if _, err := natsauth.Open(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"operator.nk", "account.nk", "system.nk"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, fi.Mode().Perm(), err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "account.nk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.Open(dir); err == nil || !strings.Contains(err.Error(), "others can read it") {
		t.Errorf("Open with a world-readable seed: %v, want a refusal naming the file's mode", err)
	}
}

// TestOperatorStaysInTheAccount: the operator user may do anything in
// the CDN's account, but the system account (where revocations are sent)
// is not in it: a claims update from there reaches no server.
func TestOperatorStaysInTheAccount(t *testing.T) {
	srv, auth := authtest.Start(t, natsembed.Config{})
	nc := authtest.Connect(t, srv.URL, auth, natsauth.RoleOperator, "")
	token, _, err := auth.Revoke(natsauth.RoleEdge, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	_, err = nc.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(token), time.Second)
	if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrTimeout) {
		t.Errorf("operator sending account claims: %v, want no responder (the system account is another account)", err)
	}
}

// TestCheckCreds: a creds file names its role and edge; a process given
// another's is refused with the command that mints its own.
func TestCheckCreds(t *testing.T) {
	auth, err := natsauth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(role natsauth.Role, name string) string {
		creds, err := auth.Creds(role, name, natsauth.CredsOptions{})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, string(role)+name+".creds")
		if err := natsauth.WriteCreds(path, creds); err != nil {
			t.Fatal(err)
		}
		return path
	}
	edgeA, geo := write(natsauth.RoleEdge, "a"), write(natsauth.RoleGeoDNS, "")
	tests := []struct {
		name, path string
		role       natsauth.Role
		as         string
		wantErr    string
	}{
		{name: "its own", path: edgeA, role: natsauth.RoleEdge, as: "a"},
		{name: "another edge's", path: edgeA, role: natsauth.RoleEdge, as: "b", wantErr: "are for edge a, not this edge b: mint its own with `cdn control creds --role edge --name b`"},
		{name: "geodns with an edge's", path: edgeA, role: natsauth.RoleGeoDNS, wantErr: "are for edge a, not this geodns"},
		{name: "edge with geodns's", path: geo, role: natsauth.RoleEdge, as: "a", wantErr: "are for geodns, not this edge a"},
		{name: "missing", path: filepath.Join(dir, "none.creds"), role: natsauth.RoleEdge, as: "a", wantErr: "read NATS creds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := natsauth.CheckCreds(tt.path, tt.role, tt.as)
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("CheckCreds(%s, %s, %q) = %v, want %q", filepath.Base(tt.path), tt.role, tt.as, err, tt.wantErr)
			}
		})
	}
}
