package main

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/purge"
	"github.com/selfcdn/cdn/purge/purgetest"
)

const (
	purgeAccepted = `{"version":42,"site":"www"}`
	purgeApplied  = `{"version":42,"site":"www","status":{"version":42,"site":"www","applied":true,"pending":[],"edges":[
		{"edge":"e1","health":"up","version":42,"applied":true},{"edge":"e2","health":"up","version":42,"applied":true},
		{"edge":"e3","health":"down","version":40,"applied":false}]}}`
	purgeDuplicate  = `{"version":42,"site":"www","duplicate":true}`
	purgeNotApplied = `{"error":{"code":"not_applied","message":"1 of 2 edges applied version 42 within 30s"},"version":42,
		"status":{"version":42,"site":"www","applied":false,"pending":["e2"]}}`
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
			wantStderr: "site=www version=42 written, but not applied by every healthy edge within 30s; pending edges: e2"},
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
		{name: "nothing to purge", args: []string{"--site", "www"}, wantCode: 2},
		{name: "all and urls", args: []string{"--site", "www", "--all", "/a"}, wantCode: 2},
		{name: "bad key", args: []string{"--site", "www", "--all", "--idempotency-key", "a b"}, wantCode: 2},
		{name: "wait too long", args: []string{"--site", "www", "--all", "--wait", "10m"}, wantCode: 2},
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
			for i, c := range calls {
				if c.Path != "/v1/sites/www/purge" || c.Query != tt.wantQuery || c.Auth != "Bearer tok" {
					t.Errorf("call %d: %s?%s auth %q, want /v1/sites/www/purge?%s auth %q", i, c.Path, c.Query, c.Auth, tt.wantQuery, "Bearer tok")
				}
				var req purge.Request
				if err := json.Unmarshal(c.Body, &req); err != nil {
					t.Errorf("call %d: body %q: %v", i, c.Body, err)
				}
				if tt.wantReq != nil && !reflect.DeepEqual(req, *tt.wantReq) {
					t.Errorf("call %d: request %+v, want %+v", i, req, *tt.wantReq)
				}
				if c.Key != calls[0].Key {
					t.Errorf("call %d: Idempotency-Key %q, want the first call's %q", i, c.Key, calls[0].Key)
				}
				if tt.wantKey != "" && c.Key != tt.wantKey {
					t.Errorf("call %d: Idempotency-Key %q, want %q", i, c.Key, tt.wantKey)
				}
			}
			// A generated key is printed, so a re-run can reuse it.
			if len(calls) > 0 && tt.wantKey == "" && !strings.Contains(stderr.String(), "idempotency key "+calls[0].Key) {
				t.Errorf("cdn purge %q: stderr %q does not name the key %q", tt.args, stderr.String(), calls[0].Key)
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
