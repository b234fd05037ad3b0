// Package sched decides where each packet goes: the per-shard message-weighted
// credit scheduler, the slow-start ramp, and the View that all shards read.
//
// No I/O and no imports of sluice's other packages. A Credit is owned by exactly one
// event loop and takes no locks; the View is immutable and swapped whole.
package sched
