package edge

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestMemoryStaysBounded fills the edge with four times its memory budget
// and checks that the tier evicts instead of growing.
func TestMemoryStaysBounded(t *testing.T) {
	const budget = 4 << 20
	obj := strings.Repeat("x", 64<<10)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write([]byte(obj))
	})
	e := startEdge(t, o.URL, nil, func(c *Config) { c.Cache.Memory = budget })
	for i := range 4 * budget / len(obj) {
		get(t, "GET", fmt.Sprintf("%s/o%d", e.URL, i), nil)
	}
	held := metricValue(t, e, "cdn_edge_cache_bytes")
	if held <= 0 || held > budget {
		t.Errorf("cdn_edge_cache_bytes = %v after storing %d bytes, want in (0, %d]", held, 4*budget, budget)
	}
	// TinyLFU either evicts an old entry or refuses the new one.
	ev := metricValue(t, e, "cdn_edge_cache_evictions_total")
	rej := metricValue(t, e, "cdn_edge_cache_admissions_rejected_total")
	if ev+rej == 0 {
		t.Errorf("no evictions and no refused admissions after storing 4 times the budget")
	}
}
