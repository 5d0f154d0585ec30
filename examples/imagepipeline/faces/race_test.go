//go:build race

package faces_test

// raceEnabled is true under the race detector, which makes pigo's search
// some ten times slower: the heaviest tests then run on fewer photos, and
// `make test-photos` runs them all without it.
const raceEnabled = true
