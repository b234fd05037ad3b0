package main

// The fixed text of docs/chaos.md around the table (`make chaos` writes the file).

const docHead = "# Chaos runs (`make chaos`)\n\n" +
	"This file is written by `make chaos` (`go run ./chaos -out docs/chaos.md`); do not edit the table by hand.\n\n" +
	"Two reference analyzers, each in its own network namespace (`ip netns`, a veth pair, a private /30: host `10.213.<n>.1`, analyzer `10.213.<n>.2`); " +
	"the distributor and the load generator on the host (loopback). The load generator posts packets with unique ids from 64 keep-alive connections; " +
	"each analyzer records every `packet_id` it counted. One fault per row, injected mid-load on `analyzer-1` unless the row says otherwise.\n\n" +
	"Columns: **offered** packets the load generator sent (or meant to), **accepted** answered `202`, **delivered** accepted ids counted by some analyzer, " +
	"**duplicates** packets counted by more than one analyzer (within one analyzer the de-duplication window absorbs repeats), " +
	"**lost** accepted ids no analyzer counted (must be 0, except a distributor killed without a spool), " +
	"**max 503/s** the largest share of `503` answers in any one second, **detect** from the fault to the first sample (every 50 ms, `/metrics-json`) " +
	"where the distributor counted a failure of `analyzer-1` or took it out of rotation, **recover** from the heal to the first sample where it is in rotation and delivering again " +
	"(for `kill9`: from the kill to the restarted distributor's first answer), **p99 202** the 99th percentile of the emitter's `202` latency.\n\n"

const docTail = `
The p99 of the ` + "`202`" + ` depends on the machine's other load: two cores shared with
other builds and tests (every row's p99 was 65–145 ms in a busier run the same day).
The duplicates left are answers lost after the analyzer counted the packet (resets,
the asymmetric partition, a slow link); ` + "`docs/design.md`" + `, "Failure model", says why
they are left and what would remove them.

Rows marked "(no deadline)" ran the same fault with analyzers that process requests
read after their ` + "`X-Sluice-Deadline`" + ` (as an analyzer that ignores the header
would): the difference in duplicates is what the deadline prevents.

## Running

As root (it creates namespaces, veth pairs and routes, and removes them when it ends,
also after Ctrl-C; a run killed outright leaves namespaces named
` + "`sluice-chaos-<pid>-<n>`" + `, which the next run removes):

    make chaos                                  # every row, writes this file
    go run ./chaos -run freeze                  # one scenario alone (comma-separated list for several)
    go run ./chaos -run freeze -ignore-deadline # the same with analyzers ignoring the deadline
    go run ./chaos -run partition -fault-sec 4 -rate 1000
    CHAOS_KEEP=1 go run ./chaos -run reset      # keep the processes' logs (the path is printed on failure)

` + "`go test ./chaos`" + ` (part of ` + "`make test`" + `, skipped under ` + "`-short`" + `) runs a short version: partition,
freeze and memory with faults of 4 s, and fails if an accepted packet is lost, a
packet is counted twice after a freeze, or the distributor's peak RSS passes its
bound. Not root: it fails and says so.

Tools: partitions are blackhole routes (` + "`ip route add blackhole`" + ` on the host towards
the analyzer, and in the namespace towards the host): this kernel has no ` + "`netem`" + `, no
` + "`tc`" + ` actions and no iptables binary. Latency, bandwidth, sliced answers and resets
come from a small fault proxy in the harness (` + "`chaos/faultproxy.go`" + `) in front of
analyzer-1. A blackhole route on the host makes the distributor's connects to that
analyzer fail at once (the route refuses them locally) rather than time out; the
connections already open see their requests and answers vanish, as in a real
partition.

` + "`kill9`" + ` runs without a spool: what the killed distributor had accepted and not yet
delivered is lost, and the row says so ("without spool: N"; usually a handful: the
linger holds packets about 1 ms). ` + "`kill9-spool`" + ` runs both distributors with
` + "`SPOOL_DIR`" + `: the restarted one replays what the killed one answered ` + "`202`" + ` and had not
delivered, so its row must show 0 lost.
`
