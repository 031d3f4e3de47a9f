// Package e2e starts the real cdn binary as processes on loopback and
// drives them the way an operator or a script would.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/testwait"
)

// cdnBin is the binary under test, built once in TestMain.
var cdnBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cdn-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cdnBin = filepath.Join(dir, "cdn")
	// cdn push keeps its scan cache in the user's cache directory: the
	// tests' pushes keep theirs here, and it goes with the rest. Go's
	// build cache lives there too unless GOCACHE says otherwise: pin it
	// first, or every run builds cdn from nothing (90 s on 2 cores).
	if os.Getenv("GOCACHE") == "" {
		if out, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
			os.Setenv("GOCACHE", strings.TrimSpace(string(out)))
		}
	}
	os.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	build := exec.Command("go", "build", "-o", cdnBin, "../cmd/cdn")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build cdn:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a cdn process started by a test.
type proc struct {
	cmd    *exec.Cmd
	output *bytes.Buffer
	done   chan struct{}
	err    error
}

// start runs cdn with args; the process is killed when the test ends if it
// is still running, and its output is shown when the test fails.
func start(t testing.TB, args ...string) *proc {
	t.Helper()
	return startWrapped(t, nil, args...)
}

// startWrapped is start with cdn run by the command wrap (cdn's path and
// args are appended to it), such as unshare for a mount of its own.
func startWrapped(t testing.TB, wrap []string, args ...string) *proc {
	t.Helper()
	p := &proc{output: &bytes.Buffer{}, done: make(chan struct{})}
	argv := append(append(slices.Clip(wrap), cdnBin), args...)
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start cdn %v: %v", args, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("cdn %v output:\n%s", args, p.output.String())
		}
	})
	return p
}

// stop sends SIGINT and waits for a clean exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("cdn exited with %v after SIGINT, want a clean exit", p.err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("cdn still running 15s after SIGINT")
	}
}

// run runs cdn to completion and returns its exit code and output.
func run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cdnBin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatalf("run cdn %v: %v", args, err)
	}
	return 0, string(out)
}

// waitOK waits until a GET of url answers 200.
func waitOK(t testing.TB, url string) {
	t.Helper()
	testwait.Until(t, url, func() bool {
		res, err := http.Get(url)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}
