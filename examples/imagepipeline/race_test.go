//go:build race

package imagepipeline_test

// raceEnabled is true under the race detector, which makes pigo's search
// some ten times slower: the workflow test then runs on the three smallest
// photos, and `make test-photos` runs it on all without it.
const raceEnabled = true
