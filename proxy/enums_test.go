package proxy

import "testing"

// Every value of the shard's enums has its own name, and one past the last says
// which type it is instead of indexing out of range.
func TestEnumNames(t *testing.T) {
	check := func(what string, names []string, past string) {
		t.Helper()
		seen := map[string]bool{}
		for i, n := range names {
			if n == "" || seen[n] {
				t.Errorf("%s %d: name %q empty or repeated", what, i, n)
			}
			seen[n] = true
		}
		if seen[past] || past == "" {
			t.Errorf("%s: out-of-range value named %q", what, past)
		}
	}
	var rs []string
	for r := rejectReason(0); r < numRejects; r++ {
		rs = append(rs, r.String())
	}
	check("rejectReason", rs, numRejects.String())
	var ds []string
	for r := dropReason(0); r < numDrops; r++ {
		ds = append(ds, r.String())
	}
	check("dropReason", ds, numDrops.String())
	fs := []string{failNone.String()}
	for k := failKind(0); k < numFails; k++ {
		fs = append(fs, k.String())
	}
	check("failKind", fs, numFails.String())
	var as []string
	for r := acceptResult(0); r < numAcceptResults; r++ {
		as = append(as, r.String())
	}
	check("acceptResult", as, numAcceptResults.String())
	var cs []string
	for c := connState(0); c < numConnStates; c++ {
		cs = append(cs, c.String())
	}
	check("connState", cs, numConnStates.String())
	if rejectQueueFull.String() != "queue_full" || dropShutdown.String() != "shutdown_timeout" || failMalformed.String() != "malformed_response" {
		t.Errorf("metric labels changed: %v %v %v", rejectQueueFull, dropShutdown, failMalformed)
	}
}
