package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/selfcdn/cdn/internal/natstest"
	"github.com/selfcdn/cdn/internal/state"
)

type testAPI struct {
	url      string
	store    *state.Store
	clock    *time.Time
	progress *Progress
	nats     *natstest.Server
}

func startAPI(t *testing.T) *testAPI {
	t.Helper()
	srv := natstest.Start(t, "", "")
	store, err := state.Open(t.Context(), natstest.Connect(t, srv.URL), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ta := &testAPI{store: store, clock: &clock, progress: NewProgress(), nats: srv}
	h := httptest.NewServer(New(store, ta.progress, slog.New(slog.DiscardHandler), func() time.Time { return *ta.clock }, 4096, 1<<20))
	t.Cleanup(h.Close)
	ta.url = h.URL
	return ta
}

// token stores a token with scopes and returns its text.
func (a *testAPI) token(t *testing.T, ttl time.Duration, scopes ...string) string {
	t.Helper()
	secret, tok := NewToken("test", scopes, ttl, *a.clock)
	if err := a.store.PutToken(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	return secret
}

func (a *testAPI) do(t *testing.T, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	return a.doHeader(t, method, path, token, body)
}

// doHeader is do with extra request header fields, as name, value pairs.
func (a *testAPI) doHeader(t *testing.T, method, path, token, body string, header ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, a.url+path, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var v map[string]any
	json.Unmarshal(b, &v)
	return res.StatusCode, v
}

func errMessage(v map[string]any) string {
	e, _ := v["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

const siteA = `{"name":"a","hosts":["a.example.com"],"origin":"http://127.0.0.1:9000"}`

// TestTokenScopes: what each kind of token may and may not do.
func TestTokenScopes(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	if code, v := a.do(t, "POST", "/v1/sites", admin, siteA); code != 201 {
		t.Fatalf("admin creates a site: %d %v", code, v)
	}
	a.do(t, "POST", "/v1/sites", admin, `{"name":"b","hosts":["b.example.com"],"origin":"http://127.0.0.1:9000"}`)
	read := a.token(t, 0, ScopeRead)
	purgeA := a.token(t, 0, "purge:a")
	expired := a.token(t, time.Hour, ScopeAdmin)
	*a.clock = a.clock.Add(2 * time.Hour)
	tests := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"no token", "GET", "/v1/sites", "", "", 401},
		{"garbage token", "GET", "/v1/sites", "nonsense", "", 401},
		{"right id, wrong secret", "GET", "/v1/sites", admin[:len(admin)-3] + "xyz", "", 401},
		{"expired token", "GET", "/v1/sites", expired, "", 401},
		{"read lists sites", "GET", "/v1/sites", read, "", 200},
		{"read gets a site", "GET", "/v1/sites/b", read, "", 200},
		{"read cannot create", "POST", "/v1/sites", read, `{"name":"c","hosts":["c.x"],"origin":"http://o"}`, 403},
		{"read cannot list tokens", "GET", "/v1/tokens", read, "", 403},
		{"site token reads its site", "GET", "/v1/sites/a", purgeA, "", 200},
		{"site token cannot read another site", "GET", "/v1/sites/b", purgeA, "", 403},
		{"site token cannot change its site", "PUT", "/v1/sites/a", purgeA, siteA, 403},
		{"site token cannot list sites", "GET", "/v1/sites", purgeA, "", 403},
		{"site token cannot drain", "POST", "/v1/edges/e1/drain", purgeA, "", 403},
		{"site token cannot mint tokens", "POST", "/v1/tokens", purgeA, `{"scopes":["admin"]}`, 403},
		{"admin deletes a site", "DELETE", "/v1/sites/b", admin, "", 204},
		{"admin: missing site", "GET", "/v1/sites/b", admin, "", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, v := a.do(t, tt.method, tt.path, tt.token, tt.body); code != tt.want {
				t.Errorf("%s %s = %d (%s), want %d", tt.method, tt.path, code, errMessage(v), tt.want)
			}
		})
	}
}

// TestBadInput: every malformed request gets a clear 4xx naming what is wrong.
func TestBadInput(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	a.do(t, "POST", "/v1/sites", admin, siteA)
	tests := []struct {
		name, method, path, body string
		want                     int
		mention                  string
	}{
		{"malformed JSON", "POST", "/v1/sites", `{"name": "x",`, 400, "malformed JSON"},
		{"unknown field", "POST", "/v1/sites", `{"name":"x","hosts":["x.y"],"origin":"http://o","colour":"red"}`, 400, `"colour"`},
		{"wrong type", "POST", "/v1/sites", `{"name":"x","hosts":"x.y","origin":"http://o"}`, 400, `"hosts"`},
		{"bad hostname", "POST", "/v1/sites", `{"name":"x","hosts":["not a host"],"origin":"http://o"}`, 400, "hosts[0]"},
		{"bad origin", "POST", "/v1/sites", `{"name":"x","hosts":["x.y"],"origin":"file:///etc"}`, 400, "origin"},
		{"bad ttl", "POST", "/v1/sites", `{"name":"x","hosts":["x.y"],"origin":"http://o","ttl":{"min":"soon"}}`, 400, "duration"},
		{"negative ttl", "POST", "/v1/sites", `{"name":"x","hosts":["x.y"],"origin":"http://o","ttl":{"max":"-1s"}}`, 400, "ttl.max"},
		{"empty body", "POST", "/v1/sites", ``, 400, "empty body"},
		{"trailing data", "POST", "/v1/sites", `{"name":"x","hosts":["x.y"],"origin":"http://o"} {}`, 400, "trailing"},
		{"huge body", "POST", "/v1/sites", `{"name":"` + strings.Repeat("x", 10000) + `"}`, 413, "over"},
		{"exists", "POST", "/v1/sites", siteA, 409, "exists"},
		{"name mismatch", "PUT", "/v1/sites/z", siteA, 400, "name"},
		{"unknown scope", "POST", "/v1/tokens", `{"scopes":["root"]}`, 400, "unknown scope"},
		{"unknown endpoint", "GET", "/v1/nope", "", 404, "no such endpoint"},
		{"drain an unknown edge", "POST", "/v1/edges/ghost/drain", "", 404, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, v := a.do(t, tt.method, tt.path, admin, tt.body)
			if code != tt.want || !strings.Contains(errMessage(v), tt.mention) {
				t.Errorf("%s %s = %d %q, want %d mentioning %q", tt.method, tt.path, code, errMessage(v), tt.want, tt.mention)
			}
		})
	}
}

// TestTokensLifecycle: a minted token works at once, is listed without its
// secret or hash, and stops working when deleted.
func TestTokensLifecycle(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	a.do(t, "POST", "/v1/sites", admin, siteA) // a site scope needs its site
	code, v := a.do(t, "POST", "/v1/tokens", admin, `{"name":"ci","scopes":["purge:a","read"]}`)
	if code != 201 {
		t.Fatalf("mint: %d %v", code, v)
	}
	ci, id := v["token"].(string), v["id"].(string)
	if code, _ := a.do(t, "GET", "/v1/sites", ci, ""); code != 200 {
		t.Errorf("new read token: %d, want 200", code)
	}
	_, list := a.do(t, "GET", "/v1/tokens", admin, "")
	b, _ := json.Marshal(list)
	if strings.Contains(string(b), ci[len(ci)-10:]) || strings.Contains(string(b), `"hash"`) {
		t.Errorf("token list shows a secret or a hash: %s", b)
	}
	if code, _ := a.do(t, "DELETE", "/v1/tokens/"+id, admin, ""); code != 204 {
		t.Errorf("delete token: %d", code)
	}
	if code, _ := a.do(t, "GET", "/v1/sites", ci, ""); code != 401 {
		t.Errorf("deleted token: %d, want 401", code)
	}
}

// TestOpenAPIListsEveryRoute keeps openapi.yaml and the routes in step.
func TestOpenAPIListsEveryRoute(t *testing.T) {
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method != "parameters" {
				documented[strings.ToUpper(method)+" "+path] = true
			}
		}
	}
	a := New(nil, nil, slog.New(slog.DiscardHandler), time.Now, 1, 1)
	for _, route := range a.routes {
		if !documented[route] {
			t.Errorf("route %s is not in openapi.yaml", route)
		}
		delete(documented, route)
	}
	for route := range documented {
		t.Errorf("openapi.yaml documents %s, which the API does not serve", route)
	}
}
