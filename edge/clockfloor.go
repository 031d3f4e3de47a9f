package edge

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/selfcdn/cdn/internal/atomicfile"
)

// clockFloorFile, under cache.dir, is where the edge keeps the start
// value of its counters (the purge clock, Vary index generations).
const clockFloorFile = "clock-floor"

// clockReserve is how many values one run may hand out past its start
// (Vary index generations count up from it) before the next run's.
const clockReserve = 1 << 32

// startClock returns where this run's purge clock and generations start:
// the wall clock in nanoseconds, but never at or below what an earlier
// run on this cache dir could have used. Objects on disk carry stamps
// from earlier runs; a host that comes back with its clock far behind
// (a region restored from a bad NTP state) would otherwise stamp new
// purges below them, and those purges would miss objects they name.
// The value is saved before it is used.
func startClock(dir string, now time.Time) (uint64, error) {
	start := uint64(now.UnixNano())
	if dir == "" {
		return start, nil
	}
	path := filepath.Join(dir, clockFloorFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return 0, fmt.Errorf("read clock floor: %w", err)
	default:
		prev, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if perr != nil {
			return 0, fmt.Errorf("clock floor %s: %w", path, perr)
		}
		start = max(start, prev+clockReserve)
	}
	if err := atomicfile.Write(path, []byte(strconv.FormatUint(start, 10)+"\n"), 0o644); err != nil {
		return 0, fmt.Errorf("save clock floor: %w", err)
	}
	return start, nil
}
