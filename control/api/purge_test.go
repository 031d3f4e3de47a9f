package api

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/state"
)

// TestPurgeBadInput: what a purge call refuses, and with which status.
func TestPurgeBadInput(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	if code, v := a.do(t, "POST", "/v1/sites", admin, siteA); code != 201 {
		t.Fatalf("create site: %d %v", code, v)
	}
	a.do(t, "POST", "/v1/sites", admin, `{"name":"b","hosts":["b.example.com"],"origin":"http://127.0.0.1:9000"}`)
	purgeA := a.token(t, 0, "purge:a")
	purgeB := a.token(t, 0, "purge:b")
	reader := a.token(t, 0, ScopeRead)
	manyTags := `{"tags":["` + strings.Repeat(`t","`, 2000) + `t"]}`
	tests := []struct {
		name, path, token, body string
		want                    int
		wantMsg                 string
	}{
		{name: "ok", path: "/v1/sites/a/purge", token: purgeA, body: `{"urls":["/x.css"]}`, want: 202},
		{name: "unknown tag is fine", path: "/v1/sites/a/purge", token: purgeA, body: `{"tags":["never-seen"]}`, want: 202},
		{name: "token of another site", path: "/v1/sites/a/purge", token: purgeB, want: 403, body: `{"all":true}`},
		{name: "read token", path: "/v1/sites/a/purge", token: reader, want: 403, body: `{"all":true}`},
		{name: "no token", path: "/v1/sites/a/purge", want: 401, body: `{"all":true}`},
		{name: "unknown site", path: "/v1/sites/zz/purge", token: admin, want: 404, body: `{"all":true}`},
		{name: "url of another host", path: "/v1/sites/a/purge", token: purgeA, body: `{"urls":["https://b.example.com/x"]}`,
			want: 400, wantMsg: "urls[0]: host b.example.com is not a host of this site"},
		{name: "empty", path: "/v1/sites/a/purge", token: purgeA, body: `{}`, want: 400, wantMsg: "nothing to purge"},
		{name: "empty lists", path: "/v1/sites/a/purge", token: purgeA, body: `{"urls":[],"tags":[]}`, want: 400, wantMsg: "nothing to purge"},
		{name: "glob prefix", path: "/v1/sites/a/purge", token: purgeA, body: `{"prefixes":["/img/*"]}`, want: 400, wantMsg: "drop the *"},
		{name: "prefix not a path", path: "/v1/sites/a/purge", token: purgeA, body: `{"prefixes":["img/"]}`, want: 400, wantMsg: "prefixes[0]"},
		{name: "unknown field", path: "/v1/sites/a/purge", token: purgeA, body: `{"url":["/x"]}`, want: 400, wantMsg: "unknown field"},
		{name: "huge list", path: "/v1/sites/a/purge", token: purgeA, body: manyTags, want: 413},
		{name: "bad wait", path: "/v1/sites/a/purge?wait=forever", token: purgeA, body: `{"all":true}`, want: 400, wantMsg: "wait:"},
		{name: "wait too long", path: "/v1/sites/a/purge?wait=1h", token: purgeA, body: `{"all":true}`, want: 400, wantMsg: "wait:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, v := a.do(t, "POST", tt.path, tt.token, tt.body)
			if code != tt.want || !strings.Contains(errMessage(v), tt.wantMsg) {
				t.Errorf("POST %s %s = %d %q, want %d %q", tt.path, tt.body, code, errMessage(v), tt.want, tt.wantMsg)
			}
		})
	}
}

// TestPurgeIdempotency: a retried call gets the first version; a key
// reused for another purge is refused.
func TestPurgeIdempotency(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	a.do(t, "POST", "/v1/sites", admin, siteA)
	post := func(key, body string) (int, map[string]any) {
		return a.doHeader(t, "POST", "/v1/sites/a/purge", admin, body, "Idempotency-Key", key)
	}
	code1, v1 := post("deploy-1", `{"tags":["x"]}`)
	code2, v2 := post("deploy-1", `{"tags":["x"]}`)
	code3, v3 := post("deploy-2", `{"tags":["x"]}`)
	if code1 != 202 || code2 != 202 || code3 != 202 {
		t.Fatalf("codes %d %d %d, want 202s (%v %v %v)", code1, code2, code3, v1, v2, v3)
	}
	if v1["version"] != v2["version"] || v2["duplicate"] != true {
		t.Errorf("retry = %v, want version %v and duplicate", v2, v1["version"])
	}
	if v3["version"] == v1["version"] {
		t.Errorf("another key got the same version %v", v3["version"])
	}
	if code, v := post("deploy-1", `{"tags":["y"]}`); code != 422 || !strings.Contains(errMessage(v), "another purge") {
		t.Errorf("key reused for another purge = %d %v, want 422", code, v)
	}
	if code, _ := post("bad key!", `{"tags":["y"]}`); code != 400 {
		t.Errorf("malformed key = %d, want 400", code)
	}
}

// TestPurgeWait: ?wait returns when every healthy edge reported the
// version, and 504 naming the ones that did not.
func TestPurgeWait(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	a.do(t, "POST", "/v1/sites", admin, siteA)
	ctx := t.Context()
	for _, e := range []struct{ name, health string }{{"e1", state.HealthUp}, {"e2", state.HealthUp}, {"e3", state.HealthDown}} {
		a.store.Heartbeat(ctx, state.Edge{Name: e.name, HTTP: "http://127.0.0.1:1"})
		a.store.SetEdgeStatus(ctx, state.EdgeStatus{Name: e.name, Health: e.health})
	}
	code, v := a.do(t, "POST", "/v1/sites/a/purge?wait=200ms", admin, `{"all":true}`)
	if code != 504 || !strings.Contains(errMessage(v), "e1, e2") {
		t.Fatalf("wait with no reports = %d %v, want 504 naming e1, e2", code, v)
	}
	version := uint64(v["version"].(float64))
	a.progress.Set(state.PurgeApplied{Edge: "e1", Version: version})
	done := make(chan struct{})
	var code2 int
	var v2 map[string]any
	go func() {
		defer close(done)
		code2, v2 = a.do(t, "GET", fmt.Sprintf("/v1/purges/%d?wait=10s", version), admin, "")
	}()
	a.progress.Set(state.PurgeApplied{Edge: "e2", Version: version + 5})
	select {
	case <-done:
	case <-time.After(9 * time.Second):
		t.Fatal("GET ?wait did not return when the last healthy edge reported")
	}
	if code2 != 200 || v2["applied"] != true {
		t.Errorf("GET purge status = %d %v, want 200 applied (e3 is down, not waited for)", code2, v2)
	}
	if code, v := a.do(t, "GET", "/v1/purges/999", admin, ""); code != 404 {
		t.Errorf("GET unknown version = %d %v, want 404", code, v)
	}
	other := a.token(t, 0, "purge:other")
	if code, _ := a.do(t, "GET", fmt.Sprintf("/v1/purges/%d", version), other, ""); code != 403 {
		t.Errorf("GET with another site's purge token = %d, want 403", code)
	}
	mine := a.token(t, 0, "purge:a")
	if code, _ := a.do(t, "GET", fmt.Sprintf("/v1/purges/%d", version), mine, ""); code != 200 {
		t.Errorf("GET with the site's purge token = %d, want 200", code)
	}
}

// TestPurgeNATSDown: with NATS gone a purge is refused with 503 and
// Retry-After, and nothing is written.
func TestPurgeNATSDown(t *testing.T) {
	a := startAPI(t)
	admin := a.token(t, 0, ScopeAdmin)
	a.do(t, "POST", "/v1/sites", admin, siteA)
	a.nats.Shutdown()
	a.nats.WaitForShutdown()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", a.url+"/v1/sites/a/purge", strings.NewReader(`{"all":true}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
		t.Errorf("purge with NATS down = %d, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
}
