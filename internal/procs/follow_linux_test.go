package procs

import (
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The following tests change the CPU set of their process, and
// GOMAXPROCS with it: each runs in a process of its own, started by
// inChild.

// inChild runs the test in a new process with env, and reports whether
// this is that process.
func inChild(t *testing.T, env ...string) bool {
	if os.Getenv("PROCS_TEST_CHILD") != "" {
		followEvery = 20 * time.Millisecond
		return true
	}
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs to take one away")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "PROCS_TEST_CHILD=1", "GOMAXPROCS=", "GODEBUG=")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return false
}

// setCPUs puts every thread of the process on set.
func setCPUs(t *testing.T, set *unix.CPUSet) {
	t.Helper()
	for range 2 { // a thread started meanwhile may have the old set
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			tid, _ := strconv.Atoi(task.Name())
			if err := unix.SchedSetaffinity(tid, set); err != nil && err != unix.ESRCH {
				t.Fatalf("set the CPUs of thread %d: %v", tid, err)
			}
		}
	}
}

// oneCPU takes the process down to one CPU; the returned func puts back
// the CPUs it had.
func oneCPU(t *testing.T) (restore func()) {
	t.Helper()
	var all, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	for c := range 1024 {
		if all.IsSet(c) {
			one.Set(c)
			break
		}
	}
	setCPUs(t, &one)
	return func() { setCPUs(t, &all) }
}

// waitProcs waits up to 3 s for GOMAXPROCS to read want.
func waitProcs(t *testing.T, want int, what string) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); runtime.GOMAXPROCS(0) != want; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOMAXPROCS %d, want %d", what, runtime.GOMAXPROCS(0), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// While Ps are lent, GOMAXPROCS follows the default (here the CPU set)
// with the lent Ps on top; once given back, the runtime's own updates
// are on again.
func TestLendFollowsDefault(t *testing.T) {
	if !inChild(t) {
		return
	}
	d := runtime.GOMAXPROCS(0)
	if d < 2 {
		t.Skipf("default GOMAXPROCS is %d", d)
	}
	n, give := Lend()
	waitProcs(t, d+n, "lent")
	restore := oneCPU(t)
	defer restore()
	waitProcs(t, 1+n, "lent, on one CPU")
	restore()
	waitProcs(t, d+n, "lent, on every CPU again")
	give()
	if got := runtime.GOMAXPROCS(0); got != d {
		t.Fatalf("given back: GOMAXPROCS %d, want %d", got, d)
	}
	oneCPU(t)
	waitProcs(t, 1, "given back, on one CPU (the runtime's update)")
	restore()
}

// A GOMAXPROCS of the operator's (or of GODEBUG=updatemaxprocs=0) stays
// as set: the lent Ps come on top of it, and a change of CPUs is not
// followed.
func TestLendKeepsFixedSetting(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
	}{
		{"environment", "GOMAXPROCS=3"},
		{"godebug", "GODEBUG=updatemaxprocs=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !inChild(t, tc.env) {
				return
			}
			set := runtime.GOMAXPROCS(0)
			n, give := Lend()
			if n != set || runtime.GOMAXPROCS(0) != 2*set {
				t.Fatalf("lent %d, GOMAXPROCS %d; want %d, %d", n, runtime.GOMAXPROCS(0), set, 2*set)
			}
			restore := oneCPU(t)
			defer restore()
			time.Sleep(20 * followEvery)
			if got := runtime.GOMAXPROCS(0); got != 2*set {
				t.Fatalf("on one CPU: GOMAXPROCS %d, want %d as set", got, 2*set)
			}
			give()
			if got := runtime.GOMAXPROCS(0); got != set {
				t.Fatalf("given back: GOMAXPROCS %d, want %d", got, set)
			}
		})
	}
}
