package proxy

import (
	"bufio"
	"bytes"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicelog/sluice/codec"
	"github.com/sluicelog/sluice/sched"
)

func init() { metrics.ExposeMetadata(true) }

// promSet is the Prometheus exposition. Counters and gauges are set from a
// Snapshot at each scrape (so they are live and consistent with each other);
// the latency histograms are plain counters of each loop (hist.go), written from
// the same snapshots.
type promSet struct {
	srv *Server
	mu  sync.Mutex // one scrape at a time updates the set
	set *metrics.Set
}

func newPromSet(srv *Server) *promSet {
	return &promSet{srv: srv, set: metrics.NewSet()}
}

// help is the HELP text of every family sluice exports.
var help = map[string]string{
	"distributor_total_packets_total":        "Total packets ingested (accepted with 202; with SPOOL_DIR also the records of the last run queued again at start).",
	"distributor_total_messages_total":       "Total messages ingested (in accepted packets).",
	"distributor_packets_by_analyzer_total":  "Packets routed to each analyzer, re-routes included.",
	"distributor_messages_by_analyzer_total": "Messages routed to each analyzer, re-routes included.",
	"distributor_queue_depth":                "Packets waiting in each analyzer's outboxes, not yet written.",
	"distributor_healthy_analyzers":          "Healthy analyzers: breaker closed (full weight or slow start), not drained; half-open ones are not counted.",
	"distributor_total_analyzers":            "Analyzers: configured, added at run time or discovered through DNS, and not removed.",
	"distributor_delivered_packets_total":    "Packets answered 2xx by each analyzer.",
	"distributor_delivered_messages_total":   "Messages in packets answered 2xx by each analyzer.",
	"distributor_in_flight_packets":          "Packets written to each analyzer and not yet answered.",
	"distributor_queued_bytes":               "Bytes of packets queued or in flight per analyzer.",
	"distributor_rerouted_packets_total":     "Packets moved away from each analyzer to another one.",
	"distributor_retries_total":              "Failed send attempts charged to each analyzer (each one re-sent or dropped).",
	"distributor_dropped_packets_total":      "Accepted packets given up on, by analyzer and reason.",
	"distributor_upstream_failures_total":    "Failures talking to each analyzer, by kind.",
	"distributor_upstream_connections":       "Open keep-alive connections to each analyzer.",
	"distributor_upstream_batches_total":     "Batch requests answered 2xx by each analyzer.",
	"distributor_rejected_packets_total":     "Requests to /ingest answered without accepting, by reason.",
	"distributor_responses_total":            "Responses sent on the ingest port, by status code.",
	"distributor_affinity_moves_total":       "With AFFINITY=emitter_id: emitters placed on another analyzer than before (theirs left or was full, or their home had room again).",
	"distributor_shed_packets_total":         "Packets answered 503 by SHED_BELOW past SHED_AT, by their most severe message's level.",
	"distributor_analyzer_weight":            "Configured weight of each analyzer, normalised to sum to 1.",
	"distributor_analyzer_effective_weight":  "Weight the scheduler uses now (0 while out, ramping during slow start).",
	"distributor_analyzer_message_share":     "Each analyzer's share of delivered messages since start.",
	"distributor_limiting_analyzer":          "1 while this analyzer's backlog is what fills the buffer (more than half of what is held, the buffer at 90 % or its queue full), else 0.",
	"distributor_breaker_state":              "Breaker state per analyzer: 0 closed, 1 slow start, 2 half-open, 3 open, 4 drained, 5 unknown (not yet probed).",
	"distributor_breaker_opens_total":        "Times each analyzer's breaker opened (a flapping analyzer opens again and again).",
	"distributor_connections":                "Open inbound connections.",
	"distributor_connections_closed_total":   "Inbound connections the distributor closed on its own, by reason.",
	"distributor_accounting_outstanding":     "accepted - delivered - queued - in_flight - dropped - left in the spool at shutdown; always 0.",
	"distributor_bytes_in_total":             "Request bytes read on the ingest port.",
	"distributor_bytes_out_total":            "Packet bytes written to analyzers.",
	"distributor_retry_after_seconds":        "Retry-After currently sent with 503 answers.",
	"distributor_request_duration_seconds":   "Time from reading a request to writing its answer, per event loop.",
	"distributor_upstream_rtt_seconds":       "Time from writing a request to an analyzer to its answer.",
	"distributor_dropped_total":              "Accepted packets given up on, all analyzers.",
	"distributor_delivered_total":            "Packets answered 2xx, all analyzers.",
	"distributor_queued":                     "Packets waiting in outboxes, all analyzers.",
	"distributor_in_flight":                  "Packets written and not yet answered, all analyzers.",
	"distributor_build_info":                 "Always 1; the labels say which build runs (sluice version).",
}

// runtimeHelp is the HELP text of the Go runtime and process families that
// metrics.WriteProcessMetrics writes without any. A family missing here (a newer
// library) gets runtimeHelpDefault rather than an empty HELP line.
var runtimeHelp = map[string]string{
	"go_sched_latencies_seconds":                    "Time goroutines spent runnable before running.",
	"go_mutex_wait_seconds_total":                   "Time goroutines spent blocked on a sync.Mutex or sync.RWMutex.",
	"go_gc_mark_assist_cpu_seconds_total":           "CPU time goroutines spent helping the GC mark.",
	"go_gc_cpu_seconds_total":                       "CPU time spent in the GC.",
	"go_gc_pauses_seconds":                          "Stop-the-world GC pause latencies.",
	"go_scavenge_cpu_seconds_total":                 "CPU time spent returning memory to the OS.",
	"go_memlimit_bytes":                             "Go runtime memory limit (GOMEMLIMIT).",
	"go_memstats_alloc_bytes":                       "Bytes of allocated heap objects.",
	"go_memstats_alloc_bytes_total":                 "Bytes allocated for heap objects since start.",
	"go_memstats_buck_hash_sys_bytes":               "Bytes used by the profiling bucket hash table.",
	"go_memstats_frees_total":                       "Heap objects freed since start.",
	"go_memstats_gc_cpu_fraction":                   "Fraction of CPU time used by the GC since start.",
	"go_memstats_gc_sys_bytes":                      "Bytes used for GC metadata.",
	"go_memstats_heap_alloc_bytes":                  "Bytes of allocated heap objects.",
	"go_memstats_heap_idle_bytes":                   "Bytes in idle heap spans.",
	"go_memstats_heap_inuse_bytes":                  "Bytes in in-use heap spans.",
	"go_memstats_heap_objects":                      "Allocated heap objects.",
	"go_memstats_heap_released_bytes":               "Bytes of physical memory returned to the OS.",
	"go_memstats_heap_sys_bytes":                    "Bytes of heap memory obtained from the OS.",
	"go_memstats_last_gc_time_seconds":              "Unix time of the last GC.",
	"go_memstats_lookups_total":                     "Pointer lookups performed by the runtime.",
	"go_memstats_mallocs_total":                     "Heap objects allocated since start.",
	"go_memstats_mcache_inuse_bytes":                "Bytes of mcache structures in use.",
	"go_memstats_mcache_sys_bytes":                  "Bytes of memory obtained from the OS for mcache structures.",
	"go_memstats_mspan_inuse_bytes":                 "Bytes of mspan structures in use.",
	"go_memstats_mspan_sys_bytes":                   "Bytes of memory obtained from the OS for mspan structures.",
	"go_memstats_next_gc_bytes":                     "Heap size at which the next GC starts.",
	"go_memstats_other_sys_bytes":                   "Bytes of other runtime allocations.",
	"go_memstats_stack_inuse_bytes":                 "Bytes in stack spans.",
	"go_memstats_stack_sys_bytes":                   "Bytes of stack memory obtained from the OS.",
	"go_memstats_sys_bytes":                         "Bytes of memory obtained from the OS.",
	"go_cgo_calls_count":                            "Cgo calls made by the process.",
	"go_cpu_count":                                  "Logical CPUs usable by the process.",
	"go_gc_duration_seconds":                        "Quantiles of GC pause durations.",
	"go_gc_forced_count":                            "GC cycles forced by the application.",
	"go_gomaxprocs":                                 "GOMAXPROCS.",
	"go_goroutines":                                 "Goroutines that exist now.",
	"go_threads":                                    "OS threads created by the runtime.",
	"go_info":                                       "Go version the binary was built with.",
	"go_info_ext":                                   "Go compiler, OS and architecture of the binary.",
	"process_cpu_seconds_system_total":              "CPU time spent in the kernel.",
	"process_cpu_seconds_total":                     "CPU time spent in user and kernel mode.",
	"process_cpu_seconds_user_total":                "CPU time spent in user mode.",
	"process_major_pagefaults_total":                "Page faults that needed a disk read.",
	"process_minor_pagefaults_total":                "Page faults served without a disk read.",
	"process_num_threads":                           "OS threads of the process.",
	"process_resident_memory_bytes":                 "Resident memory size.",
	"process_start_time_seconds":                    "Unix time the process started.",
	"process_virtual_memory_bytes":                  "Virtual memory size.",
	"process_virtual_memory_peak_bytes":             "Peak virtual memory size.",
	"process_resident_memory_peak_bytes":            "Peak resident memory size.",
	"process_resident_memory_anon_bytes":            "Resident anonymous memory.",
	"process_resident_memory_file_bytes":            "Resident file-backed memory.",
	"process_resident_memory_shared_bytes":          "Resident shared memory.",
	"process_io_read_bytes_total":                   "Bytes read by the process, page cache included.",
	"process_io_written_bytes_total":                "Bytes written by the process, page cache included.",
	"process_io_read_syscalls_total":                "Read system calls.",
	"process_io_write_syscalls_total":               "Write system calls.",
	"process_io_storage_read_bytes_total":           "Bytes read from storage devices.",
	"process_io_storage_written_bytes_total":        "Bytes written to storage devices.",
	"process_pressure_cpu_waiting_seconds_total":    "Time runnable tasks waited for a CPU (PSI some).",
	"process_pressure_cpu_stalled_seconds_total":    "Time all tasks waited for a CPU (PSI full).",
	"process_pressure_io_waiting_seconds_total":     "Time some tasks waited for I/O (PSI some).",
	"process_pressure_io_stalled_seconds_total":     "Time all tasks waited for I/O (PSI full).",
	"process_pressure_memory_waiting_seconds_total": "Time some tasks waited for memory (PSI some).",
	"process_pressure_memory_stalled_seconds_total": "Time all tasks waited for memory (PSI full).",
}

const runtimeHelpDefault = "Go runtime or process metric from VictoriaMetrics/metrics."

// counterTypes are families the library declares as gauges although they only
// grow; declared as counters, rate() over them is what PromQL expects.
var counterTypes = map[string]bool{
	"process_io_read_bytes_total":            true,
	"process_io_written_bytes_total":         true,
	"process_io_read_syscalls_total":         true,
	"process_io_write_syscalls_total":        true,
	"process_io_storage_read_bytes_total":    true,
	"process_io_storage_written_bytes_total": true,
}

// WritePrometheus writes the whole exposition: sluice's families, then process
// and Go runtime metrics, every family with HELP text.
func (p *promSet) WritePrometheus(w io.Writer) {
	v := p.srv.View() // before the snapshots: st.Dests then covers every id of v
	shards := p.srv.shardSnapshots()
	st := p.srv.sumStats(shards)
	breakers := p.srv.ctl.breakerCounts()
	var buf bytes.Buffer
	p.mu.Lock()
	p.update(&st, v, breakers)
	p.set.WritePrometheus(&buf)
	p.mu.Unlock()
	writeHistograms(&buf, shards, v)
	p.srv.writeSpoolHist(&buf)
	metrics.WriteProcessMetrics(&buf)
	writeWithHelp(w, buf.Bytes())
}

func (p *promSet) update(st *Stats, v *sched.View, breakers []breakerCounts) {
	c := func(name string, n int64) { p.set.GetOrCreateCounter(name).Set(uint64(max(n, 0))) }
	g := func(name string, x float64) { p.set.GetOrCreateGauge(name, nil).Set(x) }
	tot := st.Total()
	c("distributor_total_packets_total", st.AcceptedPackets)
	c("distributor_total_messages_total", st.AcceptedMessages)
	c("distributor_delivered_total", tot.DeliveredPackets)
	c("distributor_dropped_total", tot.DroppedTotal())
	g("distributor_queued", float64(tot.Queued))
	g("distributor_in_flight", float64(tot.InFlight))
	g("distributor_healthy_analyzers", float64(v.Healthy()))
	g("distributor_total_analyzers", float64(v.Live()))
	g("distributor_connections", float64(st.Conns))
	g("distributor_accounting_outstanding", float64(st.AcceptedPackets-tot.DeliveredPackets-tot.Queued-tot.InFlight-tot.DroppedTotal()-tot.LeftInSpool))
	p.updateSpool(st, &tot)
	g("distributor_retry_after_seconds", float64(p.srv.retryAfter.Load()))
	g(buildInfoSeries, 1)
	c("distributor_bytes_in_total", st.BytesIn)
	c("distributor_affinity_moves_total", st.AffinityMoves)
	c("distributor_bytes_out_total", st.BytesOut)
	for i, name := range rejectNames {
		c(`distributor_rejected_packets_total{reason="`+name+`"}`, st.Rejected[i])
	}
	for l := codec.LevelTrace; l < codec.LevelFatal; l++ { // the levels SHED_BELOW can shed
		c(`distributor_shed_packets_total{level="`+l.String()+`"}`, st.Shed[l])
	}
	for i, name := range closeNames {
		c(`distributor_connections_closed_total{reason="`+name+`"}`, st.Closed[i])
	}
	for i, code := range statusCodes {
		c(`distributor_responses_total{code="`+strconv.Itoa(code)+`"}`, st.Responses[i])
	}
	c(`distributor_responses_total{code="other"}`, st.Responses[len(statusCodes)])
	p.forgetRemoved(v)
	for i := range v.Members {
		m := &v.Members[i]
		if m.State == StateRemoved {
			continue
		}
		d := &st.Dests[i]
		l := `{analyzer="` + m.Name + `"}`
		c("distributor_packets_by_analyzer_total"+l, d.RoutedPackets)
		c("distributor_messages_by_analyzer_total"+l, d.RoutedMessages)
		g("distributor_queue_depth"+l, float64(d.Queued))
		c("distributor_delivered_packets_total"+l, d.DeliveredPackets)
		c("distributor_delivered_messages_total"+l, d.DeliveredMessages)
		g("distributor_in_flight_packets"+l, float64(d.InFlight))
		g("distributor_queued_bytes"+l, float64(d.QueuedBytes))
		c("distributor_rerouted_packets_total"+l, d.Rerouted)
		c("distributor_retries_total"+l, d.Retries)
		c("distributor_upstream_batches_total"+l, d.Batches)
		g("distributor_upstream_connections"+l, float64(d.Conns))
		g("distributor_analyzer_weight"+l, m.Weight)
		g("distributor_analyzer_effective_weight"+l, m.Effective)
		g("distributor_breaker_state"+l, float64(m.State)) // the State's number is the documented code
		g("distributor_limiting_analyzer"+l, b2f(p.srv.ctl.limiting(i)))
		if i < len(breakers) {
			c("distributor_breaker_opens_total"+l, breakers[i].opens)
		}
		share := 0.0
		if tot.DeliveredMessages > 0 {
			share = float64(d.DeliveredMessages) / float64(tot.DeliveredMessages)
		}
		g("distributor_analyzer_message_share"+l, share)
		for r, name := range dropNames {
			c(`distributor_dropped_packets_total{analyzer="`+m.Name+`",reason="`+name+`"}`, d.Dropped[r])
		}
		for k, name := range failNames {
			c(`distributor_upstream_failures_total{analyzer="`+m.Name+`",kind="`+name+`"}`, d.Failures[k])
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// forgetRemoved unregisters the series of analyzers that were removed (and whose
// name no live analyzer took): they vanish from the exposition instead of standing
// frozen. Their counts stay in the distributor's totals. An analyzer added again
// under the name starts its series from 0, which Prometheus reads as a reset.
func (p *promSet) forgetRemoved(v *sched.View) {
	var gone []string
	for i := range v.Members {
		if v.Members[i].State == StateRemoved {
			gone = append(gone, v.Members[i].Name)
		}
	}
	if len(gone) == 0 {
		return
	}
	for i := range v.Members {
		if v.Members[i].State != StateRemoved {
			gone = slices.DeleteFunc(gone, func(n string) bool { return n == v.Members[i].Name })
		}
	}
	for _, series := range p.set.ListMetricNames() {
		for _, n := range gone {
			if strings.Contains(series, `analyzer="`+n+`"`) {
				p.set.UnregisterMetric(series)
			}
		}
	}
}

// writeWithHelp copies an exposition, filling in the HELP lines that
// VictoriaMetrics/metrics leaves empty and correcting the TYPE of counterTypes.
func writeWithHelp(w io.Writer, expo []byte) {
	bw := bufio.NewWriter(w)
	for len(expo) > 0 {
		line := expo
		if i := bytes.IndexByte(expo, '\n'); i >= 0 {
			line, expo = expo[:i+1], expo[i+1:]
		} else {
			expo = nil
		}
		text := bytes.TrimRight(line, "\n")
		if name, ok := bytes.CutPrefix(text, []byte("# HELP ")); ok && bytes.IndexByte(name, ' ') < 0 {
			if h := helpFor(string(name)); h != "" {
				_, _ = bw.WriteString("# HELP " + string(name) + " " + h + "\n")
				continue
			}
		}
		if rest, ok := bytes.CutPrefix(text, []byte("# TYPE ")); ok {
			if name, _, _ := bytes.Cut(rest, []byte(" ")); counterTypes[string(name)] {
				_, _ = bw.WriteString("# TYPE " + string(name) + " counter\n")
				continue
			}
		}
		_, _ = bw.Write(line)
	}
	_ = bw.Flush()
}

// helpFor is a family's HELP text. A distributor family without an entry in help
// keeps an empty HELP, which the exposition test reports.
func helpFor(name string) string {
	if text, ok := help[name]; ok {
		return text
	}
	if text, ok := runtimeHelp[name]; ok {
		return text
	}
	if strings.HasPrefix(name, "distributor_") {
		return ""
	}
	return runtimeHelpDefault
}

// observeRequests records how long the answers of one event took.
func (s *shard) observeRequests(n int) {
	if n > 0 {
		s.stats.Request.observe(requestBounds, nanotime()-s.now, int64(n))
	}
}

// observeUpstream records one analyzer round trip.
func (s *shard) observeUpstream(d *dest, ns int64) {
	d.st.RTT.observe(upstreamBounds, ns, 1)
}

// writeHistograms writes the latency families, one series per loop (and analyzer),
// from the per-shard snapshots.
func writeHistograms(w *bytes.Buffer, shards []Stats, v *sched.View) {
	if len(shards) == 0 {
		return
	}
	const reqName, rttName = "distributor_request_duration_seconds", "distributor_upstream_rtt_seconds"
	writeHistHead(w, reqName)
	for i := range shards {
		writeHist(w, reqName, `loop="`+strconv.Itoa(i)+`"`, requestBounds, &shards[i].Request)
	}
	writeHistHead(w, rttName)
	for i := range shards {
		for a := range shards[i].Dests {
			if a < len(v.Members) && v.Members[a].State != StateRemoved {
				writeHist(w, rttName, `analyzer="`+v.Members[a].Name+`",loop="`+strconv.Itoa(i)+`"`, upstreamBounds, &shards[i].Dests[a].RTT)
			}
		}
	}
}
