package proxy

import (
	"strconv"

	"github.com/sluicelog/sluice/codec"
)

// Counters are plain integers written only by the shard's own event loop, so the
// data path pays for no atomic instruction and shares no cache line. Readers take a
// Snapshot by running a copy on each loop (Server.snapshotShard via EventLoop.Execute), so
// every scrape sees each shard at one instant and the accounting invariant holds
// exactly in what is exported:
//
//	accepted = delivered + queued + in_flight + dropped + left_in_spool            (whole distributor)
//	routed_a = delivered_a + queued_a + in_flight_a + dropped_a + left_in_spool_a + rerouted_a   (per analyzer)
//
// left_in_spool is 0 without SPOOL_DIR; with one, accepted counts the records
// replayed at start too.

// rejectReason says why a packet was never accepted; it indexes Stats.Rejected.
type rejectReason uint8

// Rejection reasons for packets that were never accepted.
const (
	rejectFull         rejectReason = iota // INGEST_BUFFER_SIZE reached
	rejectNoAnalyzer                       // no analyzer eligible
	rejectQueueFull                        // chosen analyzer's queue full and no spill target
	rejectShutdown                         // distributor is stopping
	rejectInvalid                          // failed validation (400)
	rejectTooLarge                         // body over the limit (413)
	rejectProtocol                         // any other malformed request (4xx/5xx from the parser)
	rejectConns                            // MAX_CONNS reached
	rejectRateLimited                      // EMITTER_RATE_LIMIT (429)
	rejectUnauthorized                     // INGEST_TOKENS set, no valid bearer token (401)
	rejectConnsPerIP                       // MAX_CONNS_PER_IP reached for the client's address
	rejectShed                             // SHED_BELOW: past SHED_AT, the packet's most severe level is below it (503)
	rejectSpoolFull                        // SPOOL_MAX_BYTES reached
	rejectSpoolFailed                      // the spool's disk is failing (or the 202's group failed: rewritten as 503)
	numRejects
)

// rejectNames are the metrics' reason labels, in rejectReason order.
var rejectNames = [numRejects]string{"full", "no_analyzer", "queue_full", "shutdown", "invalid", "too_large", "protocol", "max_conns", "rate_limited", "unauthorized", "max_conns_per_ip", "shed", "spool_full", "spool_failed"}

func (r rejectReason) String() string {
	if r < numRejects {
		return rejectNames[r]
	}
	return "rejectReason(" + strconv.Itoa(int(r)) + ")"
}

// closeReason says why the distributor closed an inbound connection on its own
// (not because the client asked, hung up, or sent a request that was refused);
// it indexes Stats.Closed.
type closeReason uint8

const (
	closeRequestTimeout closeReason = iota // REQUEST_TIMEOUT_SEC: no complete request in time (from accept, or from a request's first byte)
	closeIdleTimeout                       // IDLE_TIMEOUT_SEC: keep-alive connection idle
	closeEvicted                           // MAX_CONNS reached: the loop's longest-idle connection made room for a new one
	closeLingerLimit                       // a refused connection still sending after lingerTime or lingerBytes (lingerclose.go)
	numCloses
)

// closeNames are the metrics' reason labels, in closeReason order.
var closeNames = [numCloses]string{"request_timeout", "idle_timeout", "evicted_idle", "linger_limit"}

func (r closeReason) String() string {
	if r < numCloses {
		return closeNames[r]
	}
	return "closeReason(" + strconv.Itoa(int(r)) + ")"
}

// dropReason says why an accepted packet was given up; it indexes DestStats.Dropped.
type dropReason uint8

// Drop reasons for packets that were accepted and could not be delivered.
const (
	dropRetries  dropReason = iota // SENDER_RETRIES spent
	dropShutdown                   // still undelivered when the shutdown timeout ran out
	numDrops
)

// dropNames are the metrics' reason labels, in dropReason order.
var dropNames = [numDrops]string{"retries_exhausted", "shutdown_timeout"}

func (r dropReason) String() string {
	if r < numDrops {
		return dropNames[r]
	}
	return "dropReason(" + strconv.Itoa(int(r)) + ")"
}

// failKind is a failure on the way to an analyzer; it indexes DestStats.Failures.
// All of them count towards MAX_FAILURES except failStatus4xx, which says the
// analyzer is up but refused this one packet.
type failKind int8

const (
	failNone failKind = iota - 1 // upstream.failed of a connection no failure closed
	failConnect
	failTimeout
	failStatus5xx
	failStatus4xx
	failMalformed
	failClosed
	numFails
)

// failNames are the metrics' kind labels, in failKind order.
var failNames = [numFails]string{"connect", "timeout", "status_5xx", "status_4xx", "malformed_response", "connection_closed"}

func (k failKind) String() string {
	switch {
	case k == failNone:
		return "none"
	case k >= 0 && k < numFails:
		return failNames[k]
	}
	return "failKind(" + strconv.Itoa(int(k)) + ")"
}

// Response status codes counted by code; anything else is counted as "other".
var statusCodes = [...]int{100, 200, 202, 400, 401, 404, 405, 408, 411, 413, 414, 415, 417, 429, 431, 500, 501, 503, 505}

func statusIndex(code int) int {
	for i, c := range statusCodes {
		if c == code {
			return i
		}
	}
	return len(statusCodes)
}

// DestStats are one analyzer's counters on one shard (or summed over shards).
type DestStats struct {
	RoutedPackets     int64 // assignments to this analyzer, re-routes in included
	RoutedMessages    int64
	DeliveredPackets  int64
	DeliveredMessages int64
	Queued            int64 // waiting in the outbox
	QueuedBytes       int64 // bytes of queued and in-flight packets
	InFlight          int64 // written, no answer yet
	Rerouted          int64 // moved away to another analyzer
	Retries           int64 // failed attempts charged to this analyzer
	Dropped           [numDrops]int64
	Failures          [numFails]int64
	Conns             int64 // open upstream connections
	Batches           int64 // batch requests answered 2xx
	LeftInSpool       int64 // held when the shutdown timeout ran out, left on disk for the next start (SPOOL_DIR)
	RTT               latencyHist
}

func (d *DestStats) add(o *DestStats) {
	d.RoutedPackets += o.RoutedPackets
	d.RoutedMessages += o.RoutedMessages
	d.DeliveredPackets += o.DeliveredPackets
	d.DeliveredMessages += o.DeliveredMessages
	d.Queued += o.Queued
	d.QueuedBytes += o.QueuedBytes
	d.InFlight += o.InFlight
	d.Rerouted += o.Rerouted
	d.Retries += o.Retries
	for i := range d.Dropped {
		d.Dropped[i] += o.Dropped[i]
	}
	for i := range d.Failures {
		d.Failures[i] += o.Failures[i]
	}
	d.Conns += o.Conns
	d.Batches += o.Batches
	d.LeftInSpool += o.LeftInSpool
	d.RTT.add(&o.RTT)
}

// DroppedTotal sums drops over reasons.
func (d *DestStats) DroppedTotal() int64 {
	var n int64
	for _, v := range d.Dropped {
		n += v
	}
	return n
}

// Stats is one shard's counters (or all shards summed).
type Stats struct {
	AcceptedPackets  int64
	AcceptedMessages int64
	Rejected         [numRejects]int64
	Shed             [codec.NumLevels]int64 // packets refused by SHED_BELOW, by their most severe level (also in Rejected[rejectShed])
	AffinityMoves    int64                  // AFFINITY: remembered emitters placed on another analyzer than before
	Responses        [len(statusCodes) + 1]int64
	Closed           [numCloses]int64 // inbound connections the distributor closed, by reason
	Conns            int64            // open inbound connections
	BytesIn          int64            // request bytes parsed
	BytesOut         int64            // packet bytes written to analyzers
	Request          latencyHist
	Dests            []DestStats

	SpoolReplayed      int64 // records of the last run queued again at start (also in AcceptedPackets)
	SpoolInvalid       int64 // records found at start that are no valid packet: settled, not sent
	SpoolFailedAnswers int64 // held 202s rewritten as 503 because their group's write failed
}

func (s *Stats) add(o *Stats) {
	s.AcceptedPackets += o.AcceptedPackets
	s.AcceptedMessages += o.AcceptedMessages
	for i := range s.Rejected {
		s.Rejected[i] += o.Rejected[i]
	}
	for i := range s.Shed {
		s.Shed[i] += o.Shed[i]
	}
	for i := range s.Responses {
		s.Responses[i] += o.Responses[i]
	}
	for i := range s.Closed {
		s.Closed[i] += o.Closed[i]
	}
	s.AffinityMoves += o.AffinityMoves
	s.Conns += o.Conns
	s.BytesIn += o.BytesIn
	s.BytesOut += o.BytesOut
	s.Request.add(&o.Request)
	s.SpoolReplayed += o.SpoolReplayed
	s.SpoolInvalid += o.SpoolInvalid
	s.SpoolFailedAnswers += o.SpoolFailedAnswers
	for len(s.Dests) < len(o.Dests) {
		s.Dests = append(s.Dests, DestStats{})
	}
	for i := range o.Dests {
		s.Dests[i].add(&o.Dests[i])
	}
}

// Total sums the per-analyzer counters.
func (s *Stats) Total() DestStats {
	var t DestStats
	for i := range s.Dests {
		t.add(&s.Dests[i])
	}
	return t
}

// clone copies s, Dests included, for a snapshot.
func (s *Stats) clone() Stats {
	c := *s
	c.Dests = append([]DestStats(nil), s.Dests...)
	return c
}
