package main

import (
	"bytes"
	"encoding/json"
	"log"
	"log/slog"
	"testing"
)

// TestStdLogThroughSlog: what a library prints with the standard log
// package comes out as one of our JSON lines.
func TestStdLogThroughSlog(t *testing.T) {
	prev, prevFlags := slog.Default(), log.Flags()
	t.Cleanup(func() { slog.SetDefault(prev); log.SetFlags(prevFlags) })
	var b bytes.Buffer
	l := logFlags{level: "info", format: "json"}
	if _, err := l.logger(&b); err != nil {
		t.Fatal(err)
	}
	log.Printf("failed to sufficiently increase receive buffer size")
	var line struct{ Level, Msg string }
	if err := json.Unmarshal(b.Bytes(), &line); err != nil || line.Level != "INFO" || line.Msg != "failed to sufficiently increase receive buffer size" {
		t.Fatalf("standard log line came out as %q (%v)", b.String(), err)
	}
}
