// Package testheap measures the live heap for tests that bound what an
// idle connection (or any held object) keeps.
package testheap

import "runtime"

// InUse is the heap in use after a collection.
func InUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
