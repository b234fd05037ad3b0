//go:build race

package proxy

// raceEnabled scales the heavy end-to-end tests down under the race detector,
// which slows this code ten-fold; `make test` also runs them at full size without it.
const raceEnabled = true
