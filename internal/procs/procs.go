// Package procs lends Ps to goroutines that keep theirs while they wait
// in a system call of their own (geodns's UDP workers, which sleep in
// recvmmsg as gdnsd's threads do): it raises GOMAXPROCS by the Ps lent,
// so that the rest of the process keeps the Ps it had.
//
// Setting GOMAXPROCS turns off the runtime's own updates of it (to a
// container's new CPU limit or CPU set) until SetDefaultGOMAXPROCS. So
// while Ps are lent, the default is taken again now and then and the
// lent Ps added to it, and when the last are given back the default is
// restored. A GOMAXPROCS set before (by the environment variable, or in
// code) or GODEBUG=updatemaxprocs=0 is a fixed setting: it is kept, and
// the lent Ps are added to it.
package procs

import (
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// followEvery is how often the default is taken again while Ps are lent.
// Each time stops the world twice (about 0.3 ms with waiting workers),
// where the runtime's own check every second is free: it can read the
// default without setting it, which a program cannot.
var followEvery = 10 * time.Second

var lent struct {
	sync.Mutex
	n      int           // Ps lent
	follow bool          // the default is followed (decided at the first lending)
	stop   chan struct{} // ends the follower; nil while none runs
	done   chan struct{} // closed when the follower has ended
}

// Base is how many Ps the process has for itself: GOMAXPROCS less the Ps
// lent. A CPU load is a fraction of it.
func Base() int {
	lent.Lock()
	defer lent.Unlock()
	return base()
}

func base() int { return max(runtime.GOMAXPROCS(0)-lent.n, 1) }

// Lend raises GOMAXPROCS by one P for each of the process's own (Base),
// for as many goroutines that keep a P; giveBack lowers it again.
func Lend() (n int, giveBack func()) {
	lent.Lock()
	defer lent.Unlock()
	if lent.n == 0 {
		lent.follow = followsDefault()
	}
	n = base()
	lent.n += n
	runtime.GOMAXPROCS(n + lent.n)
	if lent.follow && lent.stop == nil {
		lent.stop, lent.done = make(chan struct{}), make(chan struct{})
		go follow(lent.stop, lent.done)
	}
	var once sync.Once
	return n, func() { once.Do(func() { unlend(n) }) }
}

func unlend(n int) {
	lent.Lock()
	b := base()
	lent.n -= n
	stop, done := lent.stop, lent.done
	if lent.n > 0 || stop == nil {
		runtime.GOMAXPROCS(b + lent.n)
		lent.Unlock()
		return
	}
	lent.stop, lent.done = nil, nil
	lent.Unlock()
	close(stop)
	<-done // outside the lock: the follower takes it
	lent.Lock()
	defer lent.Unlock()
	if lent.n == 0 {
		runtime.SetDefaultGOMAXPROCS() // and the runtime's updates with it
	} else {
		runtime.GOMAXPROCS(base() + lent.n) // lent again meanwhile
	}
}

// followsDefault says whether GOMAXPROCS is the runtime's default, to be
// followed, rather than a fixed setting. The runtime does not say which
// it is, nor what the default is without setting it; so it is set, and
// put back if it was not the same. Call with lent held, nothing lent.
func followsDefault() bool {
	if godebugSays("updatemaxprocs", "0") {
		return false
	}
	was := runtime.GOMAXPROCS(0)
	runtime.SetDefaultGOMAXPROCS()
	if runtime.GOMAXPROCS(0) == was {
		return true
	}
	runtime.GOMAXPROCS(was)
	return false
}

// godebugSays reports whether GODEBUG sets key to value.
func godebugSays(key, value string) bool {
	found := false
	for kv := range strings.SplitSeq(os.Getenv("GODEBUG"), ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k == key {
			found = v == value // the last one counts
		}
	}
	return found
}

// follow takes the default again every followEvery until stop is closed.
func follow(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(followEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		lent.Lock()
		runtime.SetDefaultGOMAXPROCS()
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + lent.n)
		lent.Unlock()
	}
}
