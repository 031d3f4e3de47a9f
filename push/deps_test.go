package push

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoStorageDeps: a CI tool that imports push or purge links none of
// control's storage: no NATS client and no internal/state (issue 21).
// Their wire types are their own.
func TestNoStorageDeps(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not installed:", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/selfcdn/cdn/push", "github.com/selfcdn/cdn/purge").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list -deps listed nothing")
	}
	forbidden := []string{"github.com/nats-io/", "github.com/selfcdn/cdn/internal/state"}
	for _, dep := range deps {
		for _, prefix := range forbidden {
			if strings.HasPrefix(dep, prefix) {
				t.Errorf("push or purge imports %s (under %s), want none", dep, prefix)
			}
		}
	}
}
