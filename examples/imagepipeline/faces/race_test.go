//go:build race

package faces_test

// raceEnabled is true under the race detector, which makes pigo's search
// some ten times slower: the tests that run it many times are then
// skipped, and `make test-photos` (which CI runs too) runs them without.
const raceEnabled = true
