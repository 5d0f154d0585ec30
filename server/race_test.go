//go:build race

package server_test

// raceEnabled is true under the race detector; the node tests run fewer
// instances then.
const raceEnabled = true
