package bench

import "context"

// The overload rows (issue #19's benchmarks): the distributor of the "sluice" row
// with one overload mode on, on the same batch analyzers and in the same rounds,
// so each mode's cost per packet reads against the default's (the ratios
// mode / sluice). The load does not overload the analyzers: these rows measure
// what a mode costs a packet it lets through, not what it sheds or moves.
//   - shed: SHED_BELOW=ERROR, so every packet's levels are tallied in the
//     validator's pass and its most severe level checked (the bench's packet
//     holds DEBUG to ERROR messages, so its most severe is ERROR and it is never
//     shed: the row is the tally's cost);
//   - capacity: ROUTING=weighted-capacity (the controller's work; the loops only
//     apply the Views it publishes);
//   - affinity: AFFINITY=emitter_id (every packet's emitter_id hashed and its
//     remembered analyzer checked against the bound; the drivers send one
//     emitter_id, which the bound then moves between analyzers).

// Ports of the overload targets, from Config.PortBase (+1: their METRICS_ADDR).
const (
	portShed     = 60
	portCapacity = 64
	portAffinity = 68
)

// startOverloadTargets starts the three overload targets on the batch analyzers.
func (h *harness) startOverloadTargets(ctx context.Context, batch []*proc) ([]*target, error) {
	var out []*target
	for _, o := range []struct {
		name string
		port int
		env  []string
	}{
		{TargetShed, portShed, []string{"SHED_BELOW=ERROR"}},
		{TargetCapacity, portCapacity, []string{"ROUTING=weighted-capacity"}},
		{TargetAffinity, portAffinity, []string{"AFFINITY=emitter_id"}},
	} {
		t, err := h.startSluice(ctx, o.name, h.cfg.PortBase+o.port, batch, true, o.env...)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}
