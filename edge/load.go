package edge

import (
	"syscall"
	"time"

	"github.com/selfcdn/cdn/internal/procs"
)

// loadMeter measures how busy the process is: the CPU time it used since
// the last sample over the CPU time the machine could give it, 0 to 1.
// The edge reports it with each heartbeat, and GeoDNS sends a loaded
// edge fewer clients.
type loadMeter struct {
	lastCPU time.Duration
	lastAt  time.Time
}

// sample returns the load since the previous sample (0 on the first).
func (m *loadMeter) sample(now time.Time) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	prevCPU, prevAt := m.lastCPU, m.lastAt
	m.lastCPU, m.lastAt = cpu, now
	wall := now.Sub(prevAt)
	if prevAt.IsZero() || wall <= 0 {
		return 0
	}
	load := float64(cpu-prevCPU) / (float64(wall) * float64(procs.Base()))
	return min(max(load, 0), 1)
}
