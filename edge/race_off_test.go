//go:build !race

package edge

// raceEnabled: see race_on_test.go.
const raceEnabled = false
