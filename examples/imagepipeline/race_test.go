//go:build race

package imagepipeline_test

// raceEnabled is true under the race detector, which makes pigo's search
// some ten times slower: the in-process test is then skipped and the
// workflow test runs on the three smallest photos; `make test-photos`
// (which CI runs too) runs both on every photo without it.
const raceEnabled = true
