//go:build race

package push_test

// raceEnabled is true under the race detector, which slows the engine
// and the store enough that a loaded machine cannot keep a backlog at a
// service's rate limit: tests then check that the limits hold (upper
// bounds) but not that the rate is reached; `make test-rates` (which CI
// runs too) checks both without it.
const raceEnabled = true
