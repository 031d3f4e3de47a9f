package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/testwait"
	"github.com/selfcdn/cdn/purge"
)

// TestKillAfterPurgeReported: an edge writes each purge to its log before
// it reports it and fsyncs the log later, off the report's path (issue
// 25). Killed with SIGKILL as soon as a purge's ?wait answers (before the
// fsync), then started again on the same cache directory while control
// and NATS are down (so nothing can replay the purge to it), the edge
// never serves the body the purge removed: its log has the purge.
func TestKillAfterPurgeReported(t *testing.T) {
	n, control := startPushControl(t)
	var version atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		fmt.Fprintf(w, "body %d of %s", version.Load(), r.URL.Path)
	}))
	t.Cleanup(origin.Close)
	// get asks for docs.test.
	n.api(t, "POST", "/v1/sites", fmt.Sprintf(`{"name":"www","hosts":["docs.test"],"origin":%q}`, origin.URL), http.StatusCreated)
	e := n.addEdge(t)
	testwait.Until(t, "the edge serving the site", func() bool {
		res, _ := get(t, e.http, "/")
		return res.StatusCode == http.StatusOK
	})
	client := &purge.Client{BaseURL: n.control, Token: n.token}
	for i := range 3 {
		path := fmt.Sprintf("/o%d", i)
		// Cached at the edge (and on its disk) before the purge.
		for range 2 {
			if _, b := get(t, e.http, path); string(b) != fmt.Sprintf("body %d of %s", version.Load(), path) {
				t.Fatalf("round %d: GET %s = %q before the purge", i, path, b)
			}
		}
		old := fmt.Sprintf("body %d of %s", version.Load(), path)
		version.Add(1)
		res, err := client.Purge(t.Context(), "www", purge.Request{URLs: []string{path}}, purge.Options{Wait: 10 * time.Second})
		if err != nil || res.Status == nil || !res.Status.Applied {
			t.Fatalf("round %d: purge %s: %v %+v", i, path, err, res.Status)
		}
		e.proc.cmd.Process.Kill() // SIGKILL: no clean close of the purge log
		<-e.proc.done
		control.cmd.Process.Kill() // and no stream to replay the purge from
		<-control.done
		e.start(t) // ready once purge_catch_up (1s) has passed without control
		if _, b := get(t, e.http, path); string(b) == old || !strings.HasPrefix(string(b), "body ") {
			t.Fatalf("round %d: GET %s after a kill right after purge v%d was reported = %q, want the body after the purge", i, path, res.Version, b)
		}
		control = start(t, "control", "--config", filepath.Join(n.dir, "control.yaml"), "--log-level", "warn")
		waitOK(t, n.control+"/readyz")
	}
}
