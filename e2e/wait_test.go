package e2e

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/selfcdn/cdn/internal/testwait"
)

// TestUpPushWait: `cdn up`, then at once `cdn push DIR --site demo
// --wait`, as a newcomer's first deploy would go. The push must exit 0
// only once every edge serves the release: each edge up.json lists
// serves the pushed file the moment the push returns. Before issue 19 the
// wait counted only edges control had judged up, none yet at that point,
// and answered "served by every healthy edge (0)" at once.
func TestUpPushWait(t *testing.T) {
	data := t.TempDir()
	start(t, "up", "--data", data, "--origin-listen", "127.0.0.1:0", "--edge-port", "0", "--https-port", "0", "--admin-port", "0",
		"--control-listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--geodns-listen", "127.0.0.1:0", "--log-level", "warn")
	var info upInfo
	testwait.Until(t, "up.json", func() bool {
		b, err := os.ReadFile(filepath.Join(data, "up.json"))
		return err == nil && json.Unmarshal(b, &info) == nil
	})
	if len(info.Edges) < 2 || info.Control == "" || info.AdminToken == "" {
		t.Fatalf("up.json incomplete: %+v", info)
	}

	// A release with a file the origin does not have: only a switched
	// edge serves it.
	site := filepath.Join(t.TempDir(), "site")
	name, text := "/pushed-"+rand.Text()+".txt", "release of "+rand.Text()
	writeFile(t, filepath.Join(site, name[1:]), text)
	env := []string{"CDN_CONTROL_URL=" + info.Control, "CDN_TOKEN=" + info.AdminToken}
	// --timeout under cli's minute, so a wait that never ends says so.
	r := cli(t, env, "push", site, "--site", info.Site.Name, "--wait", "--timeout", "45s", "--quiet")
	if r.code != 0 {
		t.Fatalf("cdn push --wait right after cdn up:\n%s", r)
	}
	host := info.Site.Hosts[0]
	for _, e := range info.Edges {
		if res, body := fetch(t, e.HTTP+name, host); res.StatusCode != 200 || body != text {
			t.Errorf("%s %s right after the push returned: %d %q, want 200 %q\npush said:\n%s", e.Name, name, res.StatusCode, body, text, r)
		}
	}
	if want := "served by every edge ("; !strings.Contains(r.stdout, want) {
		t.Errorf("cdn push said:\n%s\nwant %q", r, want)
	}

	// A purge by full URL finds the site from the host, and waits for
	// every edge too.
	r = cli(t, env, "purge", "https://"+host+name, "--wait", "--timeout", "45s")
	if r.code != 0 || !strings.Contains(r.stderr, "site "+info.Site.Name) || !strings.Contains(r.stdout, "applied by") {
		t.Fatalf("cdn purge https://%s%s --wait:\n%s", host, name, r)
	}
}

// TestWaitNoEdge: with no edge registered, a push, a rollback and a
// purge waited for are written but exit 1, saying no edge is there; a CI
// pipeline never reads them as served or applied.
func TestWaitNoEdge(t *testing.T) {
	n := startPushNet(t, 0)
	site := filepath.Join(n.dir, "site")
	writeFile(t, filepath.Join(site, "index.html"), "<h1>nobody serves me</h1>")
	env := []string{"CDN_CONTROL_URL=" + n.control, "CDN_TOKEN=" + n.token, "CDN_SITE=docs"}
	const noEdge = "no edge to wait for: none is registered, or every one is down or draining"
	for _, c := range []struct {
		name       string
		args       []string
		wantStdout string
		wantStderr string
	}{
		{name: "push", args: []string{"push", site, "--wait=1s"}, wantStdout: "release 1 of docs", wantStderr: noEdge},
		{name: "rollback", args: []string{"rollback", "--to", "1", "--wait", "1s"}, wantStdout: "not served: " + noEdge, wantStderr: noEdge},
		{name: "purge", args: []string{"purge", "--all", "--timeout", "1s", "--wait"}, wantStderr: "written, but not applied: " + noEdge},
	} {
		r := cli(t, env, c.args...)
		if r.code != 1 || !strings.Contains(r.stdout, c.wantStdout) || !strings.Contains(r.stderr, c.wantStderr) {
			t.Errorf("%s with no edge: cdn %v:\n%s\nwant exit 1, stdout with %q, stderr with %q", c.name, c.args, r, c.wantStdout, c.wantStderr)
		}
	}
	// The push did make release 1, live: an edge joining serves it.
	var out struct {
		Live     uint64
		Releases []struct{ Number uint64 }
	}
	n.getJSON(t, "/v1/sites/docs/releases", &out)
	if out.Live != 1 || len(out.Releases) != 1 {
		t.Errorf("releases after the push: %+v, want release 1 live", out)
	}
}
