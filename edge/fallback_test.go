package edge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestFallbackOrigins: a fill goes to the next origin when one cannot be
// reached or answers 502-504, and not for other answers.
func TestFallbackOrigins(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens there any more
	unavailable := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	})
	notFound := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	good := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "good %s", r.URL.RequestURI())
	})
	tests := []struct {
		name      string
		origins   []string
		want      int
		wantBody  string
		goodCalls int64
	}{
		{name: "primary unreachable", origins: []string{gone.URL, good.URL}, want: 200, wantBody: "good /p?q=1", goodCalls: 1},
		{name: "primary 503, then unreachable, then good", origins: []string{unavailable.URL, gone.URL, good.URL}, want: 200, wantBody: "good /p?q=1", goodCalls: 1},
		{name: "a 404 is an answer, not a failure", origins: []string{notFound.URL, good.URL}, want: 404, goodCalls: 0},
		{name: "every origin fails", origins: []string{gone.URL, unavailable.URL}, want: 503, goodCalls: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := good.hits.Load()
			e := startEdge(t, tt.origins[0], nil, func(c *Config) { c.Sites[0].FallbackOrigins = tt.origins[1:] })
			res, body := get(t, "GET", e.URL+"/p?q=1", nil)
			if res.StatusCode != tt.want || (tt.wantBody != "" && body != tt.wantBody) {
				t.Errorf("GET = %d %q, want %d %q", res.StatusCode, body, tt.want, tt.wantBody)
			}
			if n := good.hits.Load() - before; n != tt.goodCalls {
				t.Errorf("good origin called %d times, want %d", n, tt.goodCalls)
			}
		})
	}
}
