// Package regions runs the CDN across three simulated regions on one
// machine: each region's hosts in a network namespace of their own, its
// clients in another, and a WAN between them with real latency, jitter
// and loss (wan_test.go). It needs root, so `make test` leaves it out:
// `make test-regions` runs it (CDN_REGIONS=1).
package regions

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/selfcdn/cdn/internal/syncbuf"
)

// cdnBin is the binary under test, built once in TestMain.
var cdnBin string

// nsPrefix names everything a run makes; the pid makes it the run's own,
// so sweep can tell a crashed run's leftovers from a live one's.
const nsPrefix = "cdnrg"

func TestMain(m *testing.M) {
	if os.Getenv("CDN_REGIONS") != "1" {
		fmt.Println("skipping the regions suite: it needs root and network namespaces; run `make test-regions` (CDN_REGIONS=1)")
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the regions suite needs root (network namespaces, TUN devices)")
		os.Exit(1)
	}
	for _, tool := range []string{"ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "%s not found: run scripts/regions-deps.sh (iproute2)\n", tool)
			os.Exit(1)
		}
	}
	sweep(nsPrefix)
	dir, err := os.MkdirTemp("", "cdn-regions-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cdnBin = filepath.Join(dir, "cdn")
	build := exec.Command("go", "build", "-o", cdnBin, "../../cmd/cdn")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as docs/deploy.md builds it
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

// proc is a cdn process in a namespace.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	err  error
}

// startIn runs cdn with args inside namespace ns. The process dies with
// the test process (SIGKILL on its death) and is killed by PID when
// owner ends (a test longer-lived than t, the one that fails if the
// start does), if still running.
func startIn(owner, t testing.TB, name, ns string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	// ip netns exec execs cdn in place: the PID is cdn's.
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, cdnBin}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	owner.Cleanup(func() {
		p.kill()
		if owner.Failed() {
			t.Logf("%s output (last 4 KiB):\n%s", name, tail(p.out.String(), 4096))
		}
	})
	return p
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// stop sends SIGTERM and waits (up to 20 s) for a clean exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s exited with %v after SIGTERM, want a clean exit", p.name, p.err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s still running 20s after SIGTERM; killing it", p.name)
		p.kill()
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
