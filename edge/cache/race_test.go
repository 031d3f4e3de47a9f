//go:build race

package cache

// raceEnabled: under the race detector, sync.Pool drops items at random
// and ristretto loses most of the reads that would teach its admission.
const raceEnabled = true
