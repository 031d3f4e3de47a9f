package push

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestActivateWait: an activation waited for is ErrNotServed unless
// control says complete, and with no edge counted the error says so
// rather than naming no pending edge.
func TestActivateWait(t *testing.T) {
	tests := []struct {
		name    string
		answer  string
		wantErr string // a substring; "" for none
	}{
		{name: "complete", answer: `{"release":{"number":3},"live":true,"expected":2,"pending":[],"complete":true}`},
		{name: "pending", answer: `{"release":{"number":3},"live":true,"expected":2,"pending":["e2"],"complete":false,
			"edges":[{"edge":"e2","health":"unknown","serving":2,"error":"disk_full: no space"}]}`,
			wantErr: "release 3: not served by every edge (pending: e2 (disk_full: no space))"},
		{name: "no edge", answer: `{"release":{"number":3},"live":true,"expected":0,"pending":[],"complete":false,
			"message":"no edge to wait for: none is registered, or every one is down or draining"}`,
			wantErr: "release 3: not served by every edge: no edge to wait for: none is registered, or every one is down or draining"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var query string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				query = r.URL.RawQuery
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(tt.answer))
			}))
			defer srv.Close()
			c := &Client{BaseURL: srv.URL, Token: "tok"}
			st, err := c.Activate(t.Context(), "docs", 3, 30*time.Second)
			if query != "wait=30s" {
				t.Errorf("query %q, want wait=30s", query)
			}
			if tt.wantErr == "" {
				if err != nil || !st.Complete {
					t.Errorf("Activate() = %+v, %v; want complete", st, err)
				}
				return
			}
			if !errors.Is(err, ErrNotServed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Activate() error = %v, want ErrNotServed with %q", err, tt.wantErr)
			}
		})
	}
}
