package edge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfcdn/cdn/internal/syncbuf"
)

// TestAccessLogComplete: every request, hits on the HTTP/1.1 fast path
// and misses on the full path alike, has its line once the edge stops,
// though lines are written in batches.
func TestAccessLogComplete(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "object")
	})
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Cache.Dir, cfg.Cache.Disk = t.TempDir(), 0
	cfg.Sites = []SiteConfig{{Name: "site", Hosts: []string{"*"}, Origin: o.URL}}
	var out syncbuf.Buffer
	srv, err := New(cfg, Deps{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), AccessLog: &out})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, nil) }()
	const n = 500
	for i := range n {
		res, err := http.Get(fmt.Sprintf("http://%s/obj/%d?q=\"%%22", ln.Addr(), i%50))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	counts := map[string]int{}
	lines := 0
	for sc.Scan() {
		var l struct {
			Msg, Site, Method, Path, Cache string
			Status                         int
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %d: %v: %s", lines, err, sc.Bytes())
		}
		if l.Msg != "request" || l.Site != "site" || l.Method != "GET" || l.Status != 200 || !strings.HasPrefix(l.Path, "/obj/") {
			t.Errorf("line %d: %s", lines, sc.Bytes())
		}
		counts[l.Cache]++
		lines++
	}
	if lines != n || counts["miss"] != 50 || counts["hit"] != n-50 {
		t.Errorf("%d lines (%v), want %d: 50 misses, the rest hits", lines, counts, n)
	}
}
