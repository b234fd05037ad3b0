package sched

import "time"

// Ramp returns the effective weight of an analyzer that rejoined `since` ago: it rises
// linearly from minFraction*weight to weight over window, and is weight when
// window <= 0 or since >= window. minFraction is clamped to [0, 1]; a negative since
// counts as 0.
//
// Linear, because the extra load the analyzer takes per second is then constant
// across the window: a concave curve (Envoy's aggression > 1) front-loads the traffic
// onto an analyzer that has just proved nothing beyond one health probe, a convex one
// wastes the window. The floor keeps the analyzer eligible from the first instant so
// its first requests come early and few. Ramp is non-decreasing in since and never
// exceeds weight.
func Ramp(weight float64, since, window time.Duration, minFraction float64) float64 {
	if window <= 0 || since >= window {
		return weight
	}
	if !(minFraction > 0) { // also NaN
		minFraction = 0
	}
	if minFraction > 1 {
		minFraction = 1
	}
	if since < 0 {
		since = 0
	}
	f := minFraction + (1-minFraction)*float64(since)/float64(window)
	return weight * min(f, 1)
}
