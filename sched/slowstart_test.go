package sched

import (
	"math"
	"math/rand"
	"testing"
	"time"
)

func TestRampEndpoints(t *testing.T) {
	const w = 0.3
	win := 30 * time.Second
	cases := []struct {
		name       string
		since, win time.Duration
		min, want  float64
	}{
		{"start", 0, win, 0.1, 0.03},
		{"negative since", -time.Second, win, 0.1, 0.03},
		{"middle", 15 * time.Second, win, 0.1, 0.03 + 0.27/2},
		{"end", win, win, 0.1, w},
		{"after", 2 * win, win, 0.1, w},
		{"no window", 0, 0, 0.1, w},
		{"negative window", time.Second, -win, 0.1, w},
		{"zero floor", 0, win, 0, 0},
		{"floor above one", 0, win, 3, w},
		{"NaN floor", 15 * time.Second, win, math.NaN(), w / 2},
	}
	for _, tc := range cases {
		if got := Ramp(w, tc.since, tc.win, tc.min); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s: Ramp(%v, %v, %v, %v) = %v, want %v", tc.name, w, tc.since, tc.win, tc.min, got, tc.want)
		}
	}
}

func TestRampMonotone(t *testing.T) {
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	for range 1000 {
		w := rng.Float64()
		win := time.Duration(1 + rng.Int63n(int64(time.Minute)))
		minFraction := rng.Float64()
		prev := -1.0
		for s := -win / 10; s <= win+win/10; s += win / 97 {
			got := Ramp(w, s, win, minFraction)
			if got < prev-1e-15 || got > w || got < minFraction*w-1e-15 {
				t.Fatalf("seed %d: Ramp(%v, %v, %v, %v) = %v after %v: not monotone within [min*w, w]", seed, w, s, win, minFraction, got, prev)
			}
			prev = got
		}
	}
}
