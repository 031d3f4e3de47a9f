package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsOneWay: parts import internal packages, never the other way;
// purge and push (what CI tools import) import nothing under edge/; edge
// and control meet only in internal/ (issue 21, STYLE.md §1).
func TestImportsOneWay(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go tool is not installed:", err)
	}
	const mod = "github.com/selfcdn/cdn/"
	out, err := exec.Command(goTool, "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, mod+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	parts := []string{"edge", "control", "geodns", "origin", "purge", "push"}
	partOf := func(pkg string) string {
		rest, ok := strings.CutPrefix(pkg, mod)
		if !ok {
			return ""
		}
		top, _, _ := strings.Cut(rest, "/")
		for _, p := range parts {
			if top == p {
				return p
			}
		}
		return ""
	}
	checked := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg, imports := fields[0], fields[1:]
		checked++
		for _, imp := range imports {
			to := partOf(imp)
			switch from := partOf(pkg); {
			case strings.HasPrefix(pkg, mod+"internal/") && to != "":
				t.Errorf("%s (internal) imports the part %s", pkg, imp)
			case (from == "purge" || from == "push") && to == "edge":
				t.Errorf("%s imports %s: what CI tools import must not link the edge", pkg, imp)
			case from == "edge" && to == "control", from == "control" && to == "edge":
				t.Errorf("%s imports %s: edge and control meet only in internal/", pkg, imp)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("go list named %d packages; want the module's", checked)
	}
}
