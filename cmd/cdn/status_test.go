package main

import (
	"io"
	"strings"
	"testing"

	"github.com/selfcdn/cdn/purge/purgetest"
)

// TestStatusCommand: cdn status reads control through the shared API
// client: a 503 is retried, an error answer names the call and what
// control said, and a bad URL is the caller's to fix (exit 2).
func TestStatusCommand(t *testing.T) {
	const (
		edges = `{"edges":[{"name":"e1","region":"eu","health":"up","seen":"2025-01-02T03:04:05Z"},
			{"name":"e2","region":"us","health":"down","draining":true,"reason":"no answer"}]}`
		sites = `{"sites":[{"name":"www","hosts":["www.example.com","example.com"]}]}`
	)
	tests := []struct {
		name       string
		url        string // "" for the fake control; "-" for none
		answers    []purgetest.Answer
		wantCode   int
		wantPaths  []string
		wantStdout string // a substring
		wantErr    string // a substring
	}{
		{name: "503 then answers", answers: []purgetest.Answer{
			{Code: 503, RetryAfter: "0", Body: `{"error":{"code":"unavailable","message":"try again"}}`}, {Code: 200, Body: edges}, {Code: 200, Body: sites}},
			wantPaths:  []string{"/v1/edges", "/v1/edges", "/v1/sites"},
			wantStdout: "2 edges (1 up, 1 down, 0 unknown, 1 draining), 1 sites"},
		{name: "unauthorized", answers: []purgetest.Answer{{Code: 401, Body: `{"error":{"code":"unauthorized","message":"bad token"}}`}},
			wantCode: 1, wantPaths: []string{"/v1/edges"}, wantErr: "GET /v1/edges: control answered 401 unauthorized: bad token"},
		{name: "bad URL", url: "control:8443", wantCode: 2, wantErr: "bad control API base URL"},
		{name: "no URL", url: "-", wantCode: 2, wantErr: "set CDN_CONTROL_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CDN_CONTROL_URL", "")
			t.Setenv("CDN_TOKEN", "")
			control := purgetest.New(t, append(tt.answers, purgetest.Answer{Code: 500})...)
			url := tt.url
			switch url {
			case "":
				url = control.URL
			case "-":
				url = ""
			}
			var stdout strings.Builder
			err := status(t.Context(), []string{"--control-url", url, "--token", "tok"}, &stdout, io.Discard)
			if got := exitCode(err); got != tt.wantCode {
				t.Errorf("cdn status: exit %d (%v), want %d", got, err, tt.wantCode)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("cdn status: error %v, want it to contain %q", err, tt.wantErr)
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("cdn status: stdout %q, want it to contain %q", stdout.String(), tt.wantStdout)
			}
			var paths []string
			for _, c := range control.Calls() {
				if c.Auth != "Bearer tok" {
					t.Errorf("call %s: auth %q, want %q", c.Path, c.Auth, "Bearer tok")
				}
				paths = append(paths, c.Path)
			}
			if strings.Join(paths, " ") != strings.Join(tt.wantPaths, " ") {
				t.Errorf("cdn status: calls %q, want %q", paths, tt.wantPaths)
			}
		})
	}
}
