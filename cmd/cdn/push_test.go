package main

import (
	"strings"
	"testing"

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
