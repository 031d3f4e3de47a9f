package edge

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/internal/testwait"
)

// TestMissAfterStore: a request that missed the cache just before another
// request's fill stored the object, and joins the group just after that
// fill left it, is answered from the cache: no second origin fetch.
func TestMissAfterStore(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=300")
		io.WriteString(w, "object")
	})
	cfg := DefaultConfig()
	cfg.Name, cfg.AccessLog, cfg.Listen = "test-edge", false, "127.0.0.1:0"
	cfg.Cache.Memory, cfg.Cache.MaxObject, cfg.Cache.Dir, cfg.Cache.Disk = 64<<20, 1<<20, t.TempDir(), 0
	cfg.Sites = []SiteConfig{{Name: "site", Hosts: []string{"*"}, Origin: o.URL}}
	srv, err := New(cfg, Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	// The second request waits after its lookup until the first one's
	// answer is complete: its fill stored the object and left the group.
	firstDone, secondMissed := make(chan struct{}), make(chan struct{})
	srv.handler.afterMiss = func(r *http.Request) {
		if r.Header.Get("X-Second") != "" {
			close(secondMissed)
			<-firstDone
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel(t)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln, nil) }()
	t.Cleanup(func() { cancel(); <-served })
	url := "http://" + ln.Addr().String() + "/obj"

	first := make(chan string, 1)
	go func() {
		res, err := http.Get(url)
		if err != nil {
			first <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		first <- string(b)
	}()
	testwait.Until(t, "the first request at the origin", func() bool { return o.hits.Load() == 1 })
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("X-Second", "1")
	second := make(chan *http.Response, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
		}
		second <- res
	}()
	// The second request missed while the first one's fill waits: it
	// would join that flight, so the fill ends only now.
	testwait.Recv(t, "the second request's miss", secondMissed)
	close(release)
	if got := testwait.Recv(t, "the first answer", first); got != "object" {
		t.Fatalf("first answer %q", got)
	}
	close(firstDone)
	res := testwait.Recv(t, "the second answer", second)
	if res == nil {
		return
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(b) != "object" || o.hits.Load() != 1 {
		t.Errorf("second answer %q, Cache-Status %q, %d origin fetches; want the stored object and 1", b, res.Header.Get("Cache-Status"), o.hits.Load())
	}
}
