//go:build race

package main

// raceEnabled: the chaos test skips under the race detector, whose memory and
// slowdown distort the RSS bound and the timings; make test runs it without.
const raceEnabled = true
