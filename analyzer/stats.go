package analyzer

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicelog/sluice/codec"
)

// shard is the counters of one event loop. Only its loop writes them (the atomics
// are for the readers: Stats, /stats and /metrics), and each shard is its own
// padded allocation, so no cache line is written by two cores per packet.
type shard struct {
	_ [64]byte

	packets      atomic.Uint64 // new packets processed (single and batched)
	messages     atomic.Uint64 // messages in them
	duplicates   atomic.Uint64 // packets already in the de-duplication window
	dupMessages  atomic.Uint64 // messages in those
	bytes        atomic.Uint64 // request body bytes received on the ingest endpoints
	batches      atomic.Uint64 // /ingest/batch requests accepted
	batchPackets atomic.Uint64 // packets in them, new or duplicate
	invalid      atomic.Uint64 // ingest requests answered 400
	failed       atomic.Uint64 // ingest requests answered 500 by the "fail" fault
	healthFailed atomic.Uint64 // health checks answered 503 by the "health-fail" fault
	refused      atomic.Uint64 // connections refused or closed by "down" / "flap"
	expired      atomic.Uint64 // ingest requests read after their X-Sluice-Deadline, answered 503, not counted
	levels       [codec.NumLevels]atomic.Uint64

	// latency is per loop for the same reason as the counters: PrometheusHistogram
	// takes a mutex per observation, which is uncontended only if one loop owns it.
	latency *metrics.PrometheusHistogram

	_ [64]byte
}

func (s *shard) addLevels(lc *codec.Levels) {
	for i, n := range lc {
		if n != 0 {
			s.levels[i].Add(uint64(n))
		}
	}
}

func (s *shard) observeLatency(n int, ns int64) {
	sec := float64(ns) / 1e9
	for ; n > 0; n-- {
		s.latency.Update(sec)
	}
}

// latencyBuckets spans an undelayed answer (tens of µs) to a simulated slow one.
var latencyBuckets = []float64{
	50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
	1, 2.5, 5, 10,
}

// shardAt returns the i-th loop shard, creating it (and its histogram) on first use.
// Shards outlive engines: a restarted analyzer's loops reuse them by index, so the
// counters keep counting and the histogram series stay the same.
func (a *Analyzer) shardAt(i int) *shard {
	a.shardsMu.Lock()
	defer a.shardsMu.Unlock()
	for len(a.shards) <= i {
		name := `analyzer_ingest_duration_seconds{loop="` + strconv.Itoa(len(a.shards)) + `"}`
		a.shards = append(a.shards, &shard{latency: a.metrics.NewPrometheusHistogramExt(name, latencyBuckets)})
	}
	return a.shards[i]
}

// Stats is a snapshot of what the analyzer has counted since New. Counters survive
// Stop and Start.
type Stats struct {
	AnalyzerID        string            `json:"analyzer_id"`
	Packets           uint64            `json:"packets"`            // new packets processed
	Messages          uint64            `json:"messages"`           // messages in them
	MessagesByLevel   map[string]uint64 `json:"messages_by_level"`  // the same, by level
	Duplicates        uint64            `json:"duplicates"`         // packets answered 200 but not processed again
	DuplicateMessages uint64            `json:"duplicate_messages"` // messages in those
	Bytes             uint64            `json:"bytes"`              // ingest request body bytes received
	Batches           uint64            `json:"batches"`            // /ingest/batch requests accepted
	BatchPackets      uint64            `json:"batch_packets"`      // packets in them, new or duplicate
	Invalid           uint64            `json:"invalid"`            // ingest requests answered 400
	Failed            uint64            `json:"failed"`             // ingest requests answered 500 by the fail fault
	HealthFailed      uint64            `json:"health_failed"`      // health checks answered 503 by the fault
	Refused           uint64            `json:"refused"`            // connections refused or closed by down/flap
	Expired           uint64            `json:"expired"`            // ingest requests read after their deadline: 503, not counted
	Connections       int               `json:"connections"`        // open now
	DedupWindow       int               `json:"dedup_window"`       // ids the window can hold
	DedupIDs          int               `json:"dedup_ids"`          // ids it holds now
	Fault             FaultStatus       `json:"fault"`
}

// Stats sums the loop shards.
func (a *Analyzer) Stats() Stats {
	st := Stats{
		AnalyzerID:      a.cfg.ID,
		MessagesByLevel: make(map[string]uint64, codec.NumLevels),
		DedupWindow:     a.dedup.size(),
		DedupIDs:        a.dedup.held(),
		Fault:           a.faultStatus(),
	}
	var levels [codec.NumLevels]uint64
	a.eachShard(func(s *shard) {
		st.Packets += s.packets.Load()
		st.Messages += s.messages.Load()
		st.Duplicates += s.duplicates.Load()
		st.DuplicateMessages += s.dupMessages.Load()
		st.Bytes += s.bytes.Load()
		st.Batches += s.batches.Load()
		st.BatchPackets += s.batchPackets.Load()
		st.Invalid += s.invalid.Load()
		st.Failed += s.failed.Load()
		st.HealthFailed += s.healthFailed.Load()
		st.Refused += s.refused.Load()
		st.Expired += s.expired.Load()
		for i := range levels {
			levels[i] += s.levels[i].Load()
		}
	})
	for i, n := range levels {
		st.MessagesByLevel[codec.Level(i).String()] = n
	}
	a.connsMu.Lock()
	st.Connections = len(a.conns)
	a.connsMu.Unlock()
	return st
}

// eachShard visits the loop shards and the control shard (counters written off the
// loops, by the fault goroutines).
func (a *Analyzer) eachShard(f func(*shard)) {
	a.shardsMu.Lock()
	for _, s := range a.shards {
		f(s)
	}
	a.shardsMu.Unlock()
	f(&a.ctl)
}

// metricFamilies is every family /metrics exposes, with its TYPE and HELP. It is the
// one place they are written down: writePrometheus annotates the exposition from
// it, whatever wrote the samples.
var metricFamilies = []struct{ name, typ, help string }{
	{"analyzer_packets_total", "counter", "New packets processed (single and batched)."},
	{"analyzer_messages_total", "counter", "Messages in the packets processed, by level."},
	{"analyzer_duplicates_total", "counter", "Duplicate packets: answered 200, not processed again."},
	{"analyzer_duplicate_messages_total", "counter", "Messages in the duplicate packets."},
	{"analyzer_received_bytes_total", "counter", "Ingest request body bytes received."},
	{"analyzer_batches_total", "counter", "POST /ingest/batch requests accepted."},
	{"analyzer_batch_packets_total", "counter", "Packets in accepted batch requests, new or duplicate."},
	{"analyzer_invalid_requests_total", "counter", "Ingest requests answered 4xx."},
	{"analyzer_expired_total", "counter", "Ingest requests read after their X-Sluice-Deadline: answered 503, their packets not counted (the distributor has sent them elsewhere)."},
	{"analyzer_faulted_total", "counter", "Answers and connections changed by an injected fault: 500 by fail, 503 by health, closed or refused by down/flap."},
	{"analyzer_ingest_duration_seconds", "histogram", "Time from reading an ingest request to handing its answer to the socket, injected delay included; one series per event loop."},
	{"analyzer_connections", "gauge", "Open connections."},
	{"analyzer_dedup_window", "gauge", "Packet ids the de-duplication window can hold (DEDUP_WINDOW, rounded up to whole stripes)."},
	{"analyzer_dedup_ids", "gauge", "Packet ids the de-duplication window holds now."},
	{"analyzer_fault_active", "gauge", "1 while the fault is injected."},
}

// writePrometheus writes the exposition: the Set's samples (counters and
// histograms), each family preceded once by its HELP and TYPE from metricFamilies.
// The Set's own metadata lines are dropped; they carry no help text.
func (a *Analyzer) writePrometheus(w io.Writer) {
	var raw bytes.Buffer
	a.metrics.WritePrometheus(&raw)
	out := make([]byte, 0, raw.Len()+4096)
	done := make(map[string]bool, len(metricFamilies))
	for rest := raw.Bytes(); len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		if line[0] == '#' {
			continue
		}
		name := string(line[:bytes.IndexAny(line, "{ ")])
		for _, f := range metricFamilies {
			if done[f.name] || !(name == f.name || f.typ == "histogram" && strings.HasPrefix(name, f.name+"_")) {
				continue
			}
			done[f.name] = true
			out = append(out, "# HELP "+f.name+" "+f.help+"\n# TYPE "+f.name+" "+f.typ+"\n"...)
		}
		out = append(out, line...)
	}
	_, _ = w.Write(out)
}

// writeMetrics is the Prometheus writer for the counters; the histograms are
// registered in the same Set and written by it.
func (a *Analyzer) writeMetrics(w io.Writer) {
	st := a.Stats()
	f := st.Fault
	var buf []byte
	sample := func(series string, v uint64) {
		buf = append(buf[:0], series...)
		buf = append(buf, ' ')
		buf = strconv.AppendUint(buf, v, 10)
		buf = append(buf, '\n')
		_, _ = w.Write(buf)
	}

	sample("analyzer_packets_total", st.Packets)
	for l := range codec.NumLevels {
		name := codec.Level(l).String()
		sample(`analyzer_messages_total{level="`+name+`"}`, st.MessagesByLevel[name])
	}
	sample("analyzer_duplicates_total", st.Duplicates)
	sample("analyzer_duplicate_messages_total", st.DuplicateMessages)
	sample("analyzer_received_bytes_total", st.Bytes)
	sample("analyzer_batches_total", st.Batches)
	sample("analyzer_batch_packets_total", st.BatchPackets)
	sample("analyzer_invalid_requests_total", st.Invalid)
	sample("analyzer_expired_total", st.Expired)
	sample(`analyzer_faulted_total{fault="fail"}`, st.Failed)
	sample(`analyzer_faulted_total{fault="health"}`, st.HealthFailed)
	sample(`analyzer_faulted_total{fault="down"}`, st.Refused)
	sample("analyzer_connections", uint64(st.Connections))
	sample("analyzer_dedup_window", uint64(st.DedupWindow))
	sample("analyzer_dedup_ids", uint64(st.DedupIDs))
	sample(`analyzer_fault_active{fault="fail"}`, b2u(f.Fail))
	sample(`analyzer_fault_active{fault="slow"}`, b2u(f.SlowMS > 0))
	sample(`analyzer_fault_active{fault="health"}`, b2u(f.HealthFail))
	sample(`analyzer_fault_active{fault="down"}`, b2u(f.Down))
	sample(`analyzer_fault_active{fault="flap"}`, b2u(f.FlapPeriodMS > 0))
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
