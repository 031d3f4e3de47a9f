package purgesync

import (
	"crypto/rand"
	"os"
	"strings"
	"sync"
)

// bootID is the machine's boot ID (Linux's random one per boot). Where
// there is none, it is made up once per process, so a log left unclean by
// a process looks like one left by a crashed machine: the safe reading.
var bootID = sync.OnceValue(func() string {
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id
		}
	}
	return "process-" + rand.Text()
})
