package regions

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The commands docs/deploy.md tells an operator to type, run here as
// written (with this run's directories and addresses), so the document
// cannot drift from what works.

// shIn runs a command in region r's data centre (kind "dc") or client
// ("cl") namespace, with extra environment, and returns its output.
func (c *cluster) shIn(r region, kind string, env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.w.nsName(r, kind)}, argv...)...)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out), nil
}

// putSite creates a site as the document does: curl PUT on control's API.
func (c *cluster) putSite(site map[string]any) error {
	b, err := json.Marshal(site)
	if err != nil {
		return err
	}
	_, err = c.shIn(regions[0], "dc", []string{"CDN_TOKEN=" + c.token}, "sh", "-c",
		`curl -sS --fail-with-body -X PUT -H "Authorization: Bearer $CDN_TOKEN" -H 'Content-Type: application/json' --data "$0" "$1"`,
		string(b), controlURL(regions[0])+"/v1/sites/"+site["name"].(string))
	return err
}

// docChecks are the document's "check it works" commands: dig with a
// client subnet, curl over HTTP/2 trusting the CA, cdn status.
func docChecks(t *testing.T, c *cluster) {
	eu := regions[0]
	out, err := c.shIn(eu, "cl", nil, "dig", "@"+addr(eu, hostGeoDNS), "www.cdn.test", "+short", "+subnet=10.78.1.0/24")
	if err != nil {
		t.Fatal(err)
	}
	ips := strings.Fields(out)
	if len(ips) == 0 {
		t.Fatalf("dig answered nothing")
	}
	for _, ip := range ips {
		if !strings.HasPrefix(ip, "10.77.1.") {
			t.Errorf("dig +subnet=10.78.1.0/24 answered %s, want an eu edge", ip)
		}
	}
	out, err = c.shIn(eu, "cl", nil, "curl", "-sS", "--fail", "--http2", "--cacert", c.path("dev-ca", "ca.pem"),
		"--resolve", "www.cdn.test:443:"+ips[0], "https://www.cdn.test/index.html")
	if err != nil || out != "home\n" {
		t.Errorf("curl --http2: %q %v", out, err)
	}
	out, err = c.shIn(eu, "dc", []string{"CDN_CONTROL_URL=" + controlURL(eu), "CDN_TOKEN=" + c.token}, cdnBin, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range regions {
		for i := range edgeHosts {
			if !strings.Contains(out, edgeName(r, i+1)) {
				t.Errorf("cdn status does not list %s:\n%s", edgeName(r, i+1), out)
			}
		}
	}
	t.Logf("cdn status:\n%s", out)
}
