package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestControlCredsOut: --out creates the directories it names (mode 0700)
// and writes the creds with mode 0600; a role that needs a name is refused.
func TestControlCredsOut(t *testing.T) {
	data := t.TempDir()
	out := filepath.Join(t.TempDir(), "etc", "cdn", "creds", "edge-a.creds")
	var stdout, stderr bytes.Buffer
	if err := runControlCreds([]string{"--data", data, "--role", "edge", "--name", "edge-a", "--out", out}, &stdout, &stderr); err != nil {
		t.Fatalf("creds --out into a missing directory: %v (%s)", err, stderr.String())
	}
	b, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(b), "BEGIN NATS USER JWT") {
		t.Fatalf("creds file: %v, %.60q", err, b)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("creds mode %o, want 600", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Dir(out)); fi.Mode().Perm() != 0o700 {
		t.Errorf("created directory mode %o, want 700", fi.Mode().Perm())
	}
	if stdout.Len() != 0 {
		t.Errorf("creds also printed to stdout (%d bytes)", stdout.Len())
	}
	if err := runControlCreds([]string{"--data", data, "--role", "edge", "--out", out}, &stdout, &stderr); err == nil {
		t.Error("an edge's creds without --name were minted")
	}
}
