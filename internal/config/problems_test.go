package config

import (
	"errors"
	"testing"
)

func TestProblems(t *testing.T) {
	var none Problems
	none.Check(true, "not recorded")
	none.Add(nil)
	if err := none.Err(); err != nil {
		t.Fatalf("no problems: %v", err)
	}
	var p Problems
	bad := errors.New("origin: bad URL")
	p.Check(false, "listen must be set (got %q)", "")
	p.Add(bad)
	err := p.Err()
	if err == nil || err.Error() != "listen must be set (got \"\")\norigin: bad URL" || !errors.Is(err, bad) {
		t.Fatalf("Err() = %v, want both problems, one per line, keeping the added error", err)
	}
}
