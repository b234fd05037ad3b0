//go:build race

package spool

// raceEnabled: allocation counts are not meaningful under the race detector;
// make test runs the Allocs tests again without it.
const raceEnabled = true
