package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/selfcdn/cdn/internal/testwait"
)

// TestUpEdgesPerRegion: `cdn up --edges-per-region 2` starts two edges in
// each of its three regions, and a region's edges share one cache tier:
// a cold URL asked at every edge is fetched from the origin once per
// region, the region's other edge getting it from the key's home.
func TestUpEdgesPerRegion(t *testing.T) {
	data := t.TempDir()
	start(t, "up", "--data", data, "--edges-per-region", "2", "--origin-listen", "127.0.0.1:0", "--edge-port", "0",
		"--https-port", "0", "--admin-port", "0", "--control-listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
		"--geodns-listen", "127.0.0.1:0")
	var info upInfo
	testwait.Until(t, "up.json", func() bool {
		b, err := os.ReadFile(filepath.Join(data, "up.json"))
		return err == nil && json.Unmarshal(b, &info) == nil
	})
	if len(info.Edges) != 6 {
		t.Fatalf("%d edges in up.json, want 6: %+v", len(info.Edges), info.Edges)
	}
	testwait.Until(t, "every edge up in cdn status", func() bool {
		cmd := exec.Command(cdnBin, "status")
		cmd.Env = append(os.Environ(), "CDN_CONTROL_URL="+info.Control, "CDN_TOKEN="+info.AdminToken)
		out, err := cmd.CombinedOutput()
		return err == nil && strings.Contains(string(out), "6 edges (6 up")
	})
	// Every edge routes by the same membership (control's verdicts reach
	// them over NATS a moment after cdn status shows them).
	testwait.Until(t, "one membership epoch on every edge", func() bool {
		epochs := map[float64]bool{}
		for _, e := range info.Edges {
			if metric(t, e.Admin+"/metrics", "cdn_tier_region_homes") != 2 {
				return false
			}
			epochs[metric(t, e.Admin+"/metrics", "cdn_tier_epoch")] = true
		}
		return len(epochs) == 1
	})
	host := info.Site.Hosts[0]
	for i := range 3 {
		path := fmt.Sprintf("/?cold=%d", i)
		for _, e := range info.Edges {
			res, _ := fetch(t, e.HTTP+path, host)
			if res.StatusCode != 200 {
				t.Errorf("%s %s: %d", e.Name, path, res.StatusCode)
			}
			t.Logf("%s %s: %s", e.Name, path, res.Header.Get("Cache-Status"))
		}
	}
	fills := map[string]float64{}
	for _, e := range info.Edges {
		for _, from := range []string{"origin", "home"} {
			// -1: no such series yet, none of those fills
			fills[from] += max(metric(t, e.Admin+"/metrics", `cdn_edge_fills_total{from="`+from+`",site="demo"}`), 0)
		}
	}
	// Three URLs, three regions: one origin fill each per region, and the
	// region's other edge filled from the home.
	if fills["origin"] != 9 || fills["home"] != 9 {
		t.Errorf("fills %v, want origin 9 and home 9 (3 URLs x 3 regions)", fills)
	}
}
