package edge

import (
	"io"
	"net/http"
	"testing"
)

// TestH3ConnectionsCountGSO checks cdn_edge_http3_connections_total:
// every HTTP/3 connection is counted once, by whether quic-go sends its
// packets with GSO, and quic-go's own switch (QUIC_GO_DISABLE_GSO) shows
// as gso="false".
func TestH3ConnectionsCountGSO(t *testing.T) {
	for _, tt := range []struct {
		name       string
		disableGSO string // QUIC_GO_DISABLE_GSO
		wantFalse  bool   // every connection counted as gso="false"
	}{
		{name: "kernel default", disableGSO: ""},
		{name: "GSO off", disableGSO: "true", wantFalse: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// quic-go reads it when the edge's UDP socket is wrapped.
			t.Setenv("QUIC_GO_DISABLE_GSO", tt.disableGSO)
			o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "max-age=60")
				io.WriteString(w, "h3 body")
			})
			e := startTLSEdge(t, o.URL, nil)
			c := e.client(t, "h3")
			for range 3 { // one connection, three requests
				res, body := getWith(t, c, "GET", e.url("www.example.test", "/obj"), nil)
				if res.StatusCode != http.StatusOK || res.ProtoMajor != 3 || body != "h3 body" {
					t.Fatalf("GET over h3: %d HTTP/%d %q", res.StatusCode, res.ProtoMajor, body)
				}
			}
			got := countersByLabel(t, e.Reg, "cdn_edge_http3_connections_total", "gso")
			if n := got["true"] + got["false"]; n != 1 {
				t.Errorf("counted %v connections (%v), want 1", n, got)
			}
			if tt.wantFalse && got["false"] != 1 {
				t.Errorf("with GSO off: %v, want the connection under gso=\"false\"", got)
			}
		})
	}
}
