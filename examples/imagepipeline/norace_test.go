//go:build !race

package imagepipeline_test

// raceEnabled is false without the race detector: see race_test.go.
const raceEnabled = false
