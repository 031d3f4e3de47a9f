package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/apiclient"
	"github.com/selfcdn/cdn/push"
)

// TestProgressPrinter: a terminal gets one bar redrawn in place, a log (CI)
// gets a line per 10% and the last one, never a carriage return.
func TestProgressPrinter(t *testing.T) {
	const blobs = 50
	feed := func(tty bool) string {
		var b strings.Builder
		p := newProgressPrinter(&b, tty)
		for i := 1; i <= blobs; i++ {
			p(push.Progress{Blobs: i, BlobsTotal: blobs, Bytes: int64(i) << 20, BytesTotal: blobs << 20})
		}
		return b.String()
	}
	t.Run("terminal", func(t *testing.T) {
		out := feed(true)
		if strings.Count(out, "\r[") != blobs || strings.Contains(out, "\n") {
			t.Fatalf("terminal output: %d redraws, newline %v, want %d redraws on one line", strings.Count(out, "\r["), strings.Contains(out, "\n"), blobs)
		}
		last := out[strings.LastIndex(out, "\r"):]
		if want := "\r[" + strings.Repeat("=", 30) + "] 100% uploaded 50/50 blobs, 50 MiB/50 MiB"; last != want {
			t.Fatalf("last bar %q, want %q", last, want)
		}
	})
	t.Run("log", func(t *testing.T) {
		out := feed(false)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if strings.Contains(out, "\r") || len(lines) != 10 {
			t.Fatalf("log output has %d lines (want 10: 10%%..100%% by tens):\n%s", len(lines), out)
		}
		if lines[0] != "uploaded 5/50 blobs, 5.0 MiB/50 MiB" || lines[9] != "uploaded 50/50 blobs, 50 MiB/50 MiB" {
			t.Fatalf("log lines:\n%s", out)
		}
	})
}

// TestServedLine: what cdn push and rollback say about where a release
// stands; never "served by every edge" when no edge serves it.
func TestServedLine(t *testing.T) {
	edges := func(health ...string) []push.EdgeStatus {
		var out []push.EdgeStatus
		for i, h := range health {
			out = append(out, push.EdgeStatus{Edge: fmt.Sprintf("e%d", i+1), Health: h})
		}
		return out
	}
	tests := []struct {
		name string
		st   push.Status
		hold bool
		wait time.Duration
		want string
	}{
		{name: "held", st: push.Status{}, hold: true, want: "held (not live)"},
		{name: "served", st: push.Status{Complete: true, Expected: 2, Edges: edges("up", "unknown")}, wait: time.Minute,
			want: "served by every edge (2) after 1.5s"},
		{name: "served, one down", st: push.Status{Complete: true, Expected: 2, Edges: edges("up", "unknown", "down")}, wait: time.Minute,
			want: "served by every edge (2) after 1.5s (1 down or draining, not waited for)"},
		{name: "served, control without edge counts", st: push.Status{Complete: true, Edges: edges("up", "down")}, wait: time.Minute,
			want: "served by every edge (1) after 1.5s (1 down or draining, not waited for)"},
		{name: "pending", st: push.Status{Expected: 2, Pending: []string{"e2"}, Edges: edges("up", "unknown")}, wait: time.Minute,
			want: "not served everywhere yet, pending: e2"},
		{name: "no edge", st: push.Status{Live: true, Message: "no edge to wait for: none is registered, or every one is down or draining"}, wait: time.Minute,
			want: "not served: no edge to wait for: none is registered, or every one is down or draining"},
		{name: "no edge, no message", st: push.Status{Live: true, Edges: edges("down")}, wait: time.Minute,
			want: "not served: control counts no edge to wait for"},
		{name: "not waiting", st: push.Status{Live: true}, want: "live; edges are switching"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := servedLine(tt.st, tt.hold, tt.wait, 1500*time.Millisecond); got != tt.want {
				t.Errorf("servedLine(%+v) = %q, want %q", tt.st, got, tt.want)
			}
		})
	}
}

// TestPushFailed: the exit codes of cdn push, releases and rollback for
// each kind of failure (configs/ci/README.md).
func TestPushFailed(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{name: "unauthorized", err: &push.APIError{StatusCode: 401}, want: exitPushAuth},
		{name: "forbidden", err: fmt.Errorf("commit release: %w", &push.APIError{StatusCode: 403}), want: exitPushAuth},
		{name: "refused", err: &push.APIError{StatusCode: 422, Code: "invalid"}, want: exitPushUsage},
		{name: "rate limited after retries", err: &push.APIError{StatusCode: 429, Code: "rate_limited"}, want: exitPushUsage},
		{name: "unavailable", err: &push.APIError{StatusCode: 503}, want: exitPushNoControl},
		{name: "unreachable", err: errors.New("dial tcp: connection refused"), want: exitPushNoControl},
		{name: "bad base URL", err: fmt.Errorf("list releases: %w", apiclient.ErrBadBaseURL), want: exitPushUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(pushFailed(tt.err)); got != tt.want {
				t.Errorf("pushFailed(%v) exits %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}
