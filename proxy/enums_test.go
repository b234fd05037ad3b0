package proxy

import (
	"testing"

	"github.com/sluicelog/sluice/codec"
)

// names lists String() of every value of an enum from 0 to past (excluded).
func names[T ~uint8 | ~int8](past T, str func(T) string) []string {
	var out []string
	for v := T(0); v < past; v++ {
		out = append(out, str(v))
	}
	return out
}

// Every value of the shard's enums has its own name, and one past the last says
// which type it is instead of indexing out of range.
func TestEnumNames(t *testing.T) {
	for _, tc := range []struct {
		what  string
		names []string
		past  string
	}{
		{"rejectReason", names(numRejects, rejectReason.String), numRejects.String()},
		{"closeReason", names(numCloses, closeReason.String), numCloses.String()},
		{"dropReason", names(numDrops, dropReason.String), numDrops.String()},
		{"failKind", append(names(numFails, failKind.String), failNone.String()), numFails.String()},
		{"acceptResult", names(numAcceptResults, acceptResult.String), numAcceptResults.String()},
		{"connState", names(numConnStates, connState.String), numConnStates.String()},
		{"heldAt", names(heldInFlight+1, heldAt.String), ""},
		{"RoutingMode", names(numRoutingModes, RoutingMode.String), numRoutingModes.String()},
		{"AffinityMode", names(numAffinityModes, AffinityMode.String)[1:], numAffinityModes.String()},                             // [0] is off, ""
		{"ShedLevel", names(shedLevelOf(codec.LevelFatal)+1, ShedLevel.String)[1:], (shedLevelOf(codec.LevelFatal) + 1).String()}, // [0] is off, ""
	} {
		seen := map[string]bool{}
		for i, n := range tc.names {
			if n == "" || seen[n] {
				t.Errorf("%s %d: name %q empty or repeated", tc.what, i, n)
			}
			seen[n] = true
		}
		if seen[tc.past] {
			t.Errorf("%s: the out-of-range value is named %q like a real one", tc.what, tc.past)
		}
	}
	if rejectQueueFull.String() != "queue_full" || dropShutdown.String() != "shutdown_timeout" || failMalformed.String() != "malformed_response" {
		t.Errorf("metric labels changed: %v %v %v", rejectQueueFull, dropShutdown, failMalformed)
	}
}
