package procs

import (
	"runtime"
	"testing"
)

func TestLendAndGiveBack(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	n1, give1 := Lend()
	if n1 != base || runtime.GOMAXPROCS(0) != 2*base || Base() != base {
		t.Fatalf("lent %d, GOMAXPROCS %d, Base %d; want %d, %d, %d", n1, runtime.GOMAXPROCS(0), Base(), base, 2*base, base)
	}
	n2, give2 := Lend()
	if n2 != base || runtime.GOMAXPROCS(0) != 3*base {
		t.Fatalf("lent %d again, GOMAXPROCS %d; want %d, %d", n2, runtime.GOMAXPROCS(0), base, 3*base)
	}
	give1()
	give1() // a second call gives nothing back
	if got := runtime.GOMAXPROCS(0); got != 2*base {
		t.Fatalf("GOMAXPROCS after one gave back = %d, want %d", got, 2*base)
	}
	give2()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("GOMAXPROCS after both gave back = %d, want %d", got, base)
	}
}
