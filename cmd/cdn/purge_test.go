package main

import (
	"cmp"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/purge"
	"github.com/selfcdn/cdn/purge/purgetest"
)

const (
	purgeAccepted = `{"version":42,"site":"www"}`
	purgeApplied  = `{"version":42,"site":"www","status":{"version":42,"site":"www","applied":true,"expected":2,"pending":[],"edges":[
		{"edge":"e1","health":"up","version":42,"applied":true},{"edge":"e2","health":"up","version":42,"applied":true},
		{"edge":"e3","health":"down","version":40,"applied":false}]}}`
	purgeDuplicate  = `{"version":42,"site":"www","duplicate":true}`
	purgeNotApplied = `{"error":{"code":"not_applied","message":"1 of 2 edges applied version 42 within 30s"},"version":42,
		"status":{"version":42,"site":"www","applied":false,"expected":2,"pending":["e2"]}}`
	purgeNoEdge = `{"error":{"code":"not_applied","message":"purge 42 was written, but no edge to wait for"},"version":42,
		"status":{"version":42,"site":"www","applied":false,"expected":0,"pending":[],"edges":[{"edge":"e3","health":"down","version":40}],
		"message":"no edge to wait for: none is registered, or every one is down or draining"}}`
	sitesList = `{"sites":[{"name":"www","hosts":["www.example.com","example.com"]},{"name":"shop","hosts":["*.shop.example.com"]}]}`
	purgeDown = `{"error":{"code":"unavailable","message":"the shared state is not reachable; try again"}}`
)

func TestPurgeCommand(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		env        map[string]string // over CDN_CONTROL_URL and CDN_TOKEN set to the fake; "" unsets
		stdin      string
		answers    []purgetest.Answer
		wantCode   int
		wantCalls  int
		wantReq    *purge.Request // the body of every call; nil: not checked
		wantQuery  string
		wantKey    string // the Idempotency-Key; "" for a generated one
		wantSite   string // the site purged; "" for www
		wantStdout string // a substring
		wantStderr string // a substring
	}{
		{name: "accepted", args: []string{"--site", "www", "/a.css", "https://www.example.com/b.js"},
			answers: []purgetest.Answer{{Code: 202, Body: purgeAccepted}}, wantCode: 0, wantCalls: 1,
			wantReq:    &purge.Request{URLs: []string{"/a.css", "https://www.example.com/b.js"}},
			wantStdout: "accepted site=www version=42 (not waiting)\n", wantStderr: "idempotency key "},
		{name: "waited", args: []string{"--site", "www", "--wait", "30s", "--tag", "release-1", "--tag", "home", "--soft"},
			answers: []purgetest.Answer{{Code: 200, Body: purgeApplied}}, wantCode: 0, wantCalls: 1, wantQuery: "wait=30s",
			wantReq:    &purge.Request{Tags: []string{"release-1", "home"}, Soft: true},
			wantStdout: "purged site=www version=42 applied by 2/2 edges in "},
		{name: "waited, one edge down", args: []string{"--site", "www", "--wait", "--all"},
			answers: []purgetest.Answer{{Code: 200, Body: purgeApplied}}, wantCode: 0, wantCalls: 1, wantQuery: "wait=5m0s",
			wantStdout: "(1 down or draining, not waited for)"},
		{name: "wait alone is --timeout", args: []string{"--site", "www", "--all", "--timeout", "1m", "--wait"},
			answers: []purgetest.Answer{{Code: 200, Body: purgeApplied}}, wantCode: 0, wantCalls: 1, wantQuery: "wait=1m0s"},
		{name: "wait with =", args: []string{"--site", "www", "--wait=45s", "--all"},
			answers: []purgetest.Answer{{Code: 200, Body: purgeApplied}}, wantCode: 0, wantCalls: 1, wantQuery: "wait=45s"},
		{name: "wait=false", args: []string{"--site", "www", "--wait=false", "--all"},
			answers: []purgetest.Answer{{Code: 202, Body: purgeAccepted}}, wantCode: 0, wantCalls: 1, wantStdout: "(not waiting)"},
		{name: "wait 0", args: []string{"--site", "www", "--wait", "0", "--all"},
			answers: []purgetest.Answer{{Code: 202, Body: purgeAccepted}}, wantCode: 0, wantCalls: 1, wantStdout: "(not waiting)"},
		{name: "wait before a URL", args: []string{"--site", "www", "--wait", "/a.css"},
			answers: []purgetest.Answer{{Code: 200, Body: purgeApplied}}, wantCode: 0, wantCalls: 1, wantQuery: "wait=5m0s",
			wantReq: &purge.Request{URLs: []string{"/a.css"}}},
		{name: "no edge to apply it", args: []string{"--site", "www", "--all", "--wait", "30s"},
			answers: []purgetest.Answer{{Code: 504, Body: purgeNoEdge}}, wantCode: 1, wantCalls: 1, wantQuery: "wait=30s",
			wantStderr: "site=www version=42 written, but not applied: no edge to wait for: none is registered, or every one is down or draining"},
		{name: "site by host", args: []string{"https://WWW.example.com/a.css", "--wait"},
			answers: []purgetest.Answer{{Code: 200, Body: sitesList}, {Code: 200, Body: purgeApplied}}, wantCode: 0, wantCalls: 2, wantQuery: "wait=5m0s",
			wantReq: &purge.Request{URLs: []string{"https://WWW.example.com/a.css"}}, wantStdout: "purged site=www", wantStderr: "site www (serves the URLs' hosts)"},
		{name: "site by host: wildcard, and paths", args: []string{"/a.css", "--prefix", "http://eu.shop.example.com/img/"},
			answers:  []purgetest.Answer{{Code: 200, Body: sitesList}, {Code: 202, Body: purgeAccepted}},
			wantCode: 0, wantCalls: 2, wantSite: "shop", wantStderr: "site shop (serves the URLs' hosts)"},
		{name: "site by host: none serves it", args: []string{"https://other.example.net/a"},
			answers: []purgetest.Answer{{Code: 200, Body: sitesList}}, wantCode: 2, wantCalls: 1, wantStderr: "host other.example.net: no site serves this host; set --site"},
		{name: "site by host: hosts of two sites", args: []string{"https://example.com/a", "https://x.shop.example.com/b"},
			answers: []purgetest.Answer{{Code: 200, Body: sitesList}}, wantCode: 2, wantCalls: 1,
			wantStderr: "several sites (shop: x.shop.example.com; www: example.com)"},
		{name: "site by host: token may not list sites", args: []string{"https://example.com/a"},
			answers:  []purgetest.Answer{{Code: 403, Body: `{"error":{"code":"forbidden","message":"this token may not GET /v1/sites"}}`}},
			wantCode: 3, wantCalls: 1, wantStderr: "needs a token that may list sites (scope read)"},
		{name: "site by host: bad URL first", args: []string{"https://example.com/a b"}, wantCode: 2, wantStderr: "space"},
		{name: "paths only, no site", args: []string{"/a", "--wait"}, wantCode: 2, wantStderr: "set --site (or CDN_SITE), or give full URLs"},
		{name: "urls from flags, args and stdin", args: []string{"--url", "/a.css", "/b.css", "-", "--prefix", "/assets/", "/c.css"},
			env:     map[string]string{"CDN_SITE": "www"},
			stdin:   "# changed files\n/d.css\n\n  /e.css  \n#/f.css\n",
			answers: []purgetest.Answer{{Code: 202, Body: purgeAccepted}}, wantCode: 0, wantCalls: 1,
			wantReq: &purge.Request{URLs: []string{"/a.css", "/b.css", "/d.css", "/e.css", "/c.css"}, Prefixes: []string{"/assets/"}}},
		{name: "after -- everything is a URL", args: []string{"--site", "www", "--", "/a.css", "--all"},
			wantCode: 2, wantStderr: `urls[1]: "--all": want a path`},
		{name: "key from env, duplicate", args: []string{"--site", "www", "--all"}, env: map[string]string{"CDN_PURGE_KEY": "deploy-7"},
			answers: []purgetest.Answer{{Code: 202, Body: purgeDuplicate}}, wantCode: 0, wantCalls: 1, wantKey: "deploy-7",
			wantReq: &purge.Request{All: true}, wantStdout: "(key seen before: nothing new written)"},
		{name: "key flag over env", args: []string{"--site", "www", "--all", "--idempotency-key", "flag-key"},
			env:     map[string]string{"CDN_PURGE_KEY": "env-key"},
			answers: []purgetest.Answer{{Code: 202, Body: purgeAccepted}}, wantCode: 0, wantCalls: 1, wantKey: "flag-key"},
		{name: "json", args: []string{"--site", "www", "--all", "--json", "--wait", "1m"},
			answers: []purgetest.Answer{{Code: 200, Body: purgeApplied}}, wantCode: 0, wantCalls: 1, wantQuery: "wait=1m0s",
			wantStdout: "\"applied\": true"},
		{name: "not applied", args: []string{"--site", "www", "--all", "--wait", "30s"},
			answers: []purgetest.Answer{{Code: 504, Body: purgeNotApplied}}, wantCode: 1, wantCalls: 1, wantQuery: "wait=30s",
			wantStderr: "site=www version=42 written, but not applied by every edge within 30s; pending edges: e2"},
		{name: "503 then applied", args: []string{"--site", "www", "/a.css", "--wait", "30s"},
			answers:  []purgetest.Answer{{Code: 503, Body: purgeDown, RetryAfter: "1"}, {Code: 200, Body: purgeApplied}},
			wantCode: 0, wantCalls: 2, wantQuery: "wait=30s", wantStdout: "purged site=www version=42"},
		{name: "503 forever", args: []string{"--site", "www", "/a.css"},
			answers:  []purgetest.Answer{{Code: 503, Body: purgeDown, RetryAfter: "1"}},
			wantCode: 4, wantCalls: 1 + purge.DefaultRetries, wantStderr: "re-running with --idempotency-key"},
		{name: "bad request", args: []string{"--site", "www", "https://evil.example.net/a"},
			answers:  []purgetest.Answer{{Code: 400, Body: `{"error":{"code":"invalid","message":"urls[0]: host evil.example.net is not a host of this site"}}`}},
			wantCode: 2, wantCalls: 1},
		{name: "too large", args: []string{"--site", "www", "/a"},
			answers: []purgetest.Answer{{Code: 413, Body: `{"error":{"code":"too_large","message":"request body over 1048576 bytes"}}`}}, wantCode: 2, wantCalls: 1},
		{name: "unknown site", args: []string{"--site", "www", "/a"},
			answers: []purgetest.Answer{{Code: 404, Body: `{"error":{"code":"not_found","message":"no site www"}}`}}, wantCode: 2, wantCalls: 1},
		{name: "forbidden", args: []string{"--site", "www", "/a"},
			answers: []purgetest.Answer{{Code: 403, Body: `{"error":{"code":"forbidden","message":"token lacks purge:www"}}`}}, wantCode: 3, wantCalls: 1},
		{name: "unauthorized", args: []string{"--site", "www", "/a"},
			answers: []purgetest.Answer{{Code: 401, Body: `{"error":{"code":"unauthorized","message":"bad token"}}`}}, wantCode: 3, wantCalls: 1},
		{name: "no site", args: []string{"/a"}, wantCode: 2, wantStderr: ""},
		{name: "no token", args: []string{"--site", "www", "/a"}, env: map[string]string{"CDN_TOKEN": ""}, wantCode: 2},
		{name: "no control URL", args: []string{"--site", "www", "/a"}, env: map[string]string{"CDN_CONTROL_URL": ""}, wantCode: 2},
		{name: "control URL without a scheme", args: []string{"--site", "www", "/a"}, env: map[string]string{"CDN_CONTROL_URL": "control:8443"},
			wantCode: 2, wantStderr: "bad control API base URL"},
		{name: "control URL without a scheme, site by host", args: []string{"https://example.com/a"}, env: map[string]string{"CDN_CONTROL_URL": "control:8443"},
			wantCode: 2, wantStderr: "bad control API base URL"},
		{name: "rate limited, then applied", args: []string{"--site", "www", "/a.css", "--wait", "30s"},
			answers:  []purgetest.Answer{{Code: 429, RetryAfter: "1", Body: `{"error":{"code":"rate_limited","message":"over the write rate"}}`}, {Code: 200, Body: purgeApplied}},
			wantCode: 0, wantCalls: 2, wantQuery: "wait=30s", wantStdout: "purged site=www version=42"},
		{name: "nothing to purge", args: []string{"--site", "www"}, wantCode: 2},
		{name: "all and urls", args: []string{"--site", "www", "--all", "/a"}, wantCode: 2},
		{name: "bad key", args: []string{"--site", "www", "--all", "--idempotency-key", "a b"}, wantCode: 2},
		{name: "wait too long", args: []string{"--site", "www", "--all", "--wait", "10m"}, wantCode: 2, wantStderr: "--wait 10m0s: want 0 to 5m0s"},
		{name: "timeout too long", args: []string{"--site", "www", "--all", "--wait", "--timeout", "10m"}, wantCode: 2, wantStderr: "--timeout 10m0s"},
		{name: "negative wait", args: []string{"--site", "www", "--all", "--wait", "-1s"}, wantCode: 2, wantStderr: "--wait -1s"},
		{name: "bad wait value", args: []string{"--site", "www", "--all", "--wait=soon"}, wantCode: 2, wantStderr: "invalid boolean value \"soon\" for -wait: want nothing (wait up to --timeout), a duration (30s, 2m) or false"},
		{name: "stdin twice", args: []string{"--site", "www", "-", "-"}, wantCode: 2},
		{name: "bad flag", args: []string{"--site", "www", "--wait", "soon"}, wantCode: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			control := purgetest.New(t, tt.answers...)
			env := map[string]string{"CDN_CONTROL_URL": control.URL, "CDN_TOKEN": "tok"}
			maps.Copy(env, tt.env)
			var stdout, stderr strings.Builder
			cmd := purgeCmd{stdin: strings.NewReader(tt.stdin), stdout: &stdout, stderr: &stderr,
				getenv: func(k string) string { return env[k] }, maxBackoff: time.Millisecond}
			err := cmd.run(t.Context(), tt.args)
			if got := exitCode(err); got != tt.wantCode {
				t.Errorf("cdn purge %q: exit %d (%v), want %d", tt.args, got, err, tt.wantCode)
			}
			if err != nil {
				stderr.WriteString(err.Error()) // as run prints it
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("cdn purge %q: stdout %q, want it to contain %q", tt.args, stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("cdn purge %q: stderr %q, want it to contain %q", tt.args, stderr.String(), tt.wantStderr)
			}
			calls := control.Calls()
			if len(calls) != tt.wantCalls {
				t.Fatalf("cdn purge %q: control got %d calls, want %d", tt.args, len(calls), tt.wantCalls)
			}
			// Finding the site by host asks for the sites first.
			purges := slices.DeleteFunc(slices.Clone(calls), func(c purgetest.Call) bool {
				return c.Method == "GET" && c.Path == "/v1/sites" && c.Auth == "Bearer tok"
			})
			wantPath := "/v1/sites/" + cmp.Or(tt.wantSite, "www") + "/purge"
			for i, c := range purges {
				if c.Path != wantPath || c.Query != tt.wantQuery || c.Auth != "Bearer tok" {
					t.Errorf("call %d: %s?%s auth %q, want %s?%s auth %q", i, c.Path, c.Query, c.Auth, wantPath, tt.wantQuery, "Bearer tok")
				}
				var req purge.Request
				if err := json.Unmarshal(c.Body, &req); err != nil {
					t.Errorf("call %d: body %q: %v", i, c.Body, err)
				}
				if tt.wantReq != nil && !reflect.DeepEqual(req, *tt.wantReq) {
					t.Errorf("call %d: request %+v, want %+v", i, req, *tt.wantReq)
				}
				if c.Key != purges[0].Key {
					t.Errorf("call %d: Idempotency-Key %q, want the first call's %q", i, c.Key, purges[0].Key)
				}
				if tt.wantKey != "" && c.Key != tt.wantKey {
					t.Errorf("call %d: Idempotency-Key %q, want %q", i, c.Key, tt.wantKey)
				}
			}
			// A generated key is printed, so a re-run can reuse it.
			if len(purges) > 0 && tt.wantKey == "" && !strings.Contains(stderr.String(), "idempotency key "+purges[0].Key) {
				t.Errorf("cdn purge %q: stderr %q does not name the key %q", tt.args, stderr.String(), purges[0].Key)
			}
		})
	}
}

// TestPurgeUnreachable checks that a control nobody answers for exits 4.
func TestPurgeUnreachable(t *testing.T) {
	control := httptest.NewServer(http.NotFoundHandler())
	url := control.URL
	control.Close() // nothing listens there now
	var stdout, stderr strings.Builder
	cmd := purgeCmd{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		getenv: func(string) string { return "" }, maxBackoff: time.Millisecond}
	err := cmd.run(t.Context(), []string{"--control-url", url, "--token", "tok", "--site", "www", "--all"})
	if got := exitCode(err); got != exitPurgeNoControl {
		t.Errorf("cdn purge against a closed port: exit %d (%v), want %d", got, err, exitPurgeNoControl)
	}
}

// TestPurgeHelp checks that -h documents the exit codes and exits 0.
func TestPurgeHelp(t *testing.T) {
	var stderr strings.Builder
	cmd := purgeCmd{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &stderr,
		getenv: func(string) string { return "secret-token" }}
	err := cmd.run(t.Context(), []string{"-h"})
	if got := exitCode(err); got != 0 {
		t.Errorf("cdn purge -h: exit %d (%v), want 0", got, err)
	}
	for _, want := range []string{"Exit codes:", "  4  control unreachable", "-idempotency-key"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("cdn purge -h printed %q, want it to contain %q", stderr.String(), want)
		}
	}
	if strings.Contains(stderr.String(), "secret-token") {
		t.Errorf("cdn purge -h printed the token from the environment")
	}
}
