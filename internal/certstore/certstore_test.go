package certstore

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/selfcdn/cdn/internal/natstest"
)

// startBucket runs a server with the bucket created, as control does.
func startBucket(t *testing.T) string {
	t.Helper()
	srv := natstest.Start(t, "", "")
	if err := CreateBucket(t.Context(), natstest.Connect(t, srv.URL), 1); err != nil {
		t.Fatal(err)
	}
	return srv.URL
}

// open binds a Storage over its own connection to url, which reconnects
// quickly after a cut.
func open(t *testing.T, url, owner string, ttl time.Duration) *Storage {
	t.Helper()
	nc, err := nats.Connect(url, nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1), nats.Timeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s := New(Config{Owner: owner, LockTTL: ttl, Poll: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err := s.Bind(t.Context(), nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Close(ctx)
	})
	return s
}

func TestKeyEncoding(t *testing.T) {
	for _, k := range []string{"certificates/acme-v02.api.letsencrypt.org-directory/www.example.com/www.example.com.crt",
		"accounts/ca/ops@example.com/ops.json", "a=b", "locks/*.example.com", "trailing.", "..", ".hidden", "ünï"} {
		enc := encodeKey(k)
		if dec, ok := decodeKey(enc); !ok || dec != k {
			t.Errorf("decode(encode(%q)) = %q, %v", k, dec, ok)
		}
	}
}

// TestStorage checks the certmagic.Storage contract: files, implicit
// directories, listing, stat, delete of a directory, fs.ErrNotExist.
func TestStorage(t *testing.T) {
	s := open(t, startBucket(t), "edge-a", time.Minute)
	ctx := t.Context()
	files := map[string]string{
		"certificates/ca/www.example.com/www.example.com.crt": "CERT",
		"certificates/ca/www.example.com/www.example.com.key": "KEY",
		"accounts/ca/ops@example.com/ops.json":                "ACCOUNT",
	}
	for k, v := range files {
		if err := s.Store(ctx, k, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range files {
		if got, err := s.Load(ctx, k); err != nil || string(got) != v {
			t.Errorf("Load(%s) = %q, %v", k, got, err)
		}
	}
	if _, err := s.Load(ctx, "certificates/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing key = %v, want fs.ErrNotExist", err)
	}
	if !s.Exists(ctx, "certificates/ca") || s.Exists(ctx, "certificates/c") {
		t.Error("Exists: directory not found, or a partial component matched")
	}
	got, err := s.List(ctx, "certificates", false)
	if err != nil || !slices.Equal(got, []string{"certificates/ca"}) {
		t.Errorf("List(certificates, false) = %v, %v", got, err)
	}
	got, _ = s.List(ctx, "certificates/ca", true)
	want := []string{"certificates/ca/www.example.com", "certificates/ca/www.example.com/www.example.com.crt", "certificates/ca/www.example.com/www.example.com.key"}
	if !slices.Equal(got, want) {
		t.Errorf("List(certificates/ca, true) = %v, want %v", got, want)
	}
	info, err := s.Stat(ctx, "certificates/ca/www.example.com/www.example.com.crt")
	if err != nil || !info.IsTerminal || info.Size != 4 || time.Since(info.Modified) > time.Minute {
		t.Errorf("Stat(file) = %+v, %v", info, err)
	}
	if info, err := s.Stat(ctx, "certificates/ca"); err != nil || info.IsTerminal {
		t.Errorf("Stat(dir) = %+v, %v; want a directory", info, err)
	}
	if err := s.Delete(ctx, "certificates"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/www.example.com/www.example.com.crt") {
		t.Error("Delete of a directory left a file under it")
	}
	if !s.Exists(ctx, "accounts/ca/ops@example.com/ops.json") {
		t.Error("Delete of one directory removed another")
	}
}

// TestNotBound: before Bind every method fails with ErrNotBound, and
// Bind refuses a bucket that lets no lock expire.
func TestNotBound(t *testing.T) {
	s := New(Config{Owner: "edge-a"})
	if _, err := s.Load(t.Context(), "x"); !errors.Is(err, ErrNotBound) {
		t.Errorf("Load before Bind = %v, want ErrNotBound", err)
	}
	if err := s.Lock(t.Context(), "x"); !errors.Is(err, ErrNotBound) {
		t.Errorf("Lock before Bind = %v, want ErrNotBound", err)
	}
	srv := natstest.Start(t, "", "")
	nc := natstest.Connect(t, srv.URL)
	if err := s.Bind(t.Context(), nc); err == nil {
		t.Error("Bind without the bucket succeeded; edges must not create it")
	}
	// A bucket made by an older control, without per-key TTLs.
	js, _ := nats.Connect(srv.URL)
	defer js.Close()
	jsc, _ := js.JetStream()
	if _, err := jsc.CreateKeyValue(&nats.KeyValueConfig{Bucket: Bucket}); err != nil {
		t.Fatal(err)
	}
	if err := s.Bind(t.Context(), nc); err == nil {
		t.Error("Bind accepted a bucket whose lock keys never expire")
	}
	select {
	case <-s.Bound():
		t.Error("Bound closed though no Bind succeeded")
	default:
	}
	if err := CreateBucket(t.Context(), nc, 1); err != nil {
		t.Fatalf("control updating the old bucket: %v", err)
	}
	if err := s.Bind(t.Context(), nc); err != nil {
		t.Errorf("Bind after control updated the bucket: %v", err)
	}
}

// TestLockExcludes has six processes take one lock many times each: two
// are never inside at once, and nobody waits forever.
func TestLockExcludes(t *testing.T) {
	url := startBucket(t)
	var inside, entered atomic.Int32
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := range 6 {
		s := open(t, url, "edge-"+string(rune('a'+i)), 5*time.Second)
		wg.Go(func() {
			for range 5 {
				if err := s.Lock(ctx, "issue_cert_www.example.com"); err != nil {
					t.Error(err)
					return
				}
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d holders inside the lock at once", n)
				}
				entered.Add(1)
				time.Sleep(2 * time.Millisecond)
				inside.Add(-1)
				if err := s.Unlock(ctx, "issue_cert_www.example.com"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := entered.Load(); got != 30 {
		t.Errorf("entered the lock %d times, want 30", got)
	}
}

// TestLockHeldWhileAlive: a holder that lives keeps its lock past the
// TTL (the keepalive renews it); Unlock by a non-holder fails.
func TestLockHeldWhileAlive(t *testing.T) {
	url := startBucket(t)
	a, b := open(t, url, "edge-a", time.Second), open(t, url, "edge-b", time.Second)
	ctx := t.Context()
	if err := a.Lock(ctx, "issue_cert_www.example.com"); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond) // over two TTLs
	defer cancel()
	if err := b.Lock(tctx, "issue_cert_www.example.com"); err == nil {
		t.Fatal("a second process took a lock whose holder is alive and renewing it")
	}
	if err := b.Unlock(ctx, "issue_cert_www.example.com"); err == nil {
		t.Error("a non-holder unlocked the lock")
	}
	if err := a.Unlock(ctx, "issue_cert_www.example.com"); err != nil {
		t.Fatal(err)
	}
	tctx, cancel = context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := b.Lock(tctx, "issue_cert_www.example.com"); err != nil {
		t.Fatalf("lock not free after Unlock: %v", err)
	}
}

// TestStaleHolderFenced cuts the holder off the network: its lock
// expires on the server (no clock of the edges is asked), another takes
// it and stores the certificate, and when the first comes back its
// write is refused and its Unlock leaves the new holder's lock alone.
func TestStaleHolderFenced(t *testing.T) {
	url := startBucket(t)
	link := natstest.Proxy(t, url)
	const ttl = time.Second
	a, b := open(t, link.URL, "edge-a", ttl), open(t, url, "edge-b", ttl)
	ctx := t.Context()
	const lock, crt = "issue_cert_www.example.com", "certificates/ca/www.example.com/www.example.com.crt"
	if err := a.Lock(ctx, lock); err != nil {
		t.Fatal(err)
	}
	link.Cut()
	cut := time.Now()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Lock(tctx, lock); err != nil {
		t.Fatalf("the lock of a holder cut off did not expire: %v", err)
	}
	if waited := time.Since(cut); waited < ttl/2 {
		t.Errorf("lock taken over %v after its holder was cut off, before its TTL %v", waited, ttl)
	}
	if err := b.Store(ctx, crt, []byte("B's cert")); err != nil {
		t.Fatalf("the new holder's fenced write: %v", err)
	}
	link.Heal()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if err = a.Store(ctx, crt, []byte("A's stale cert")); errors.Is(err, ErrLockLost) {
			break
		}
		time.Sleep(50 * time.Millisecond) // while A reconnects
	}
	if !errors.Is(err, ErrLockLost) {
		t.Errorf("stale holder's write = %v, want ErrLockLost", err)
	}
	if got, _ := b.Load(ctx, crt); string(got) != "B's cert" {
		t.Errorf("certificate = %q after the stale write, want B's", got)
	}
	if err := a.Unlock(ctx, lock); err != nil {
		t.Errorf("stale holder's Unlock: %v", err)
	}
	if ok, err := open(t, url, "edge-c", ttl).TryLock(ctx, lock); ok || err != nil {
		t.Errorf("after the stale holder's Unlock, TryLock = %v, %v; want B's lock still held", ok, err)
	}
	// B's lock still fences B's writes.
	if err := b.Store(ctx, crt, []byte("B's renewed cert")); err != nil {
		t.Errorf("holder's write after the stale Unlock: %v", err)
	}
}

// TestRenewLeaseRetakes: a holder that lost its lock, asked to renew
// the lease (as certmagic does before each order), waits for the new
// holder, takes the lock again, and gets a larger fencing token.
func TestRenewLeaseRetakes(t *testing.T) {
	url := startBucket(t)
	link := natstest.Proxy(t, url)
	const ttl = time.Second
	a, b := open(t, link.URL, "edge-a", ttl), open(t, url, "edge-b", ttl)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	const lock = "issue_cert_www.example.com"
	if err := a.Lock(ctx, lock); err != nil {
		t.Fatal(err)
	}
	first := a.held[lock].rev
	link.Cut()
	if err := b.Lock(ctx, lock); err != nil {
		t.Fatal(err)
	}
	link.Heal()
	renewed := make(chan error, 1)
	go func() { renewed <- a.RenewLockLease(ctx, lock, time.Minute) }()
	select {
	case err := <-renewed:
		t.Fatalf("RenewLockLease returned %v while another holds the lock", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := b.Unlock(ctx, lock); err != nil {
		t.Fatal(err)
	}
	if err := <-renewed; err != nil {
		t.Fatalf("RenewLockLease after the other released: %v", err)
	}
	a.mu.Lock()
	hl := a.held[lock]
	a.mu.Unlock()
	if hl == nil || hl.rev <= first {
		t.Errorf("retaken lock %+v, want a revision above %d", hl, first)
	}
}
