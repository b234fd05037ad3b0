package proxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicelog/sluice/codec"
	"github.com/sluicelog/sluice/spool"
)

// The spool's wiring (SPOOL_DIR; package spool is the write-ahead log itself).
// With no SPOOL_DIR, Server.spool and every shard's log are nil and the request
// path pays two predicted nil checks in ingest and a store in accept per request,
// three nil checks per pass over a connection's requests, and one Ref check per
// freed parcel.
//
// With a spool:
//   - each shard has a spool.Log; an accepted packet's body is appended to it
//     (parcel.ref) and settled when the packet leaves (recycle), delivered or
//     given up. What the shutdown timeout leaves is not settled: it stays on disk
//     for the next start (leave) and is counted as left_in_spool, not dropped.
//   - a 202 waits for its group: its fdatasync with SPOOL_SYNC=always, its write
//     to the file with interval (the page cache outlives a killed process, so a
//     202 survives kill -9 in both modes; with interval a power loss or kernel
//     crash can lose the last SPOOL_SYNC_INTERVAL_MS). The connection's answers
//     stay in request order: from the first 202 that waits, every later answer on
//     that connection is held too (ingress.held) and all are written when the
//     group completes (onSpoolDone). A 202 whose group failed is rewritten as 503
//     "spool write failed"; its packet stays queued and is still delivered, so
//     the emitter's retry makes a duplicate, never a loss.
//   - at start, the records found unsettled are replayed (Server.replay).

// heldMark is a held 202 in ingress.held: the group whose sync it waits for and
// where its bytes are, so it can be rewritten as 503 if that group fails.
type heldMark struct {
	group      uint64
	start, end int
	keep       bool
	failed     bool
}

// closeAfter is what a connection asked for while its answers were held: it is
// done once they are written.
type closeAfter uint8

const (
	closeAfterNone   closeAfter = iota
	closeAfterClose             // Connection: close, or a client over maxUnreadAnswers
	closeAfterLinger            // a refusal (parser error): lingering close
)

func (c closeAfter) String() string {
	switch c {
	case closeAfterNone:
		return "none"
	case closeAfterClose:
		return "close"
	case closeAfterLinger:
		return "linger"
	}
	return fmt.Sprintf("closeAfter(%d)", uint8(c))
}

// pageLater is an admin page asked for while answers were held: rendered once
// they are written, so its answer keeps its place.
type pageLater struct {
	page       int
	keep, head bool
}

// openSpool opens SPOOL_DIR (New): the lock, the check that it can be written, and
// the records left by the last run. Its error is the one line Main prints (exit 2).
func (s *Server) openSpool() error {
	cfg := &s.cfg
	sp, rec, err := spool.Open(spool.Options{
		Dir:          cfg.SpoolDir,
		SegmentBytes: cfg.SpoolSegmentBytes,
		MaxBytes:     cfg.SpoolMaxBytes,
		Sync:         cfg.SpoolSync,
		SyncInterval: cfg.SpoolSyncInterval,
		Log:          s.log,
		ObserveSync:  s.spoolSyncs.observe,
	})
	if err != nil {
		return fmt.Errorf("SPOOL_DIR=%q: %w", cfg.SpoolDir, err)
	}
	s.spool, s.recovered = sp, rec
	return nil
}

// syncHist is the spool writers' sync latencies (distributor_spool_sync_seconds).
// The writers are goroutines of their own, off the loops, once per group: a mutex
// costs nothing there.
type syncHist struct {
	mu sync.Mutex
	h  latencyHist
}

var syncBounds = newHistBounds([]float64{100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5})

func (h *syncHist) observe(d time.Duration, records int) {
	h.mu.Lock()
	h.h.observe(syncBounds, int64(d), 1)
	h.mu.Unlock()
}

func (h *syncHist) copy() latencyHist {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h
}

func init() {
	for k, v := range map[string]string{
		"distributor_spool_bytes":                   "Bytes in live spool segment files (SPOOL_DIR).",
		"distributor_spool_max_bytes":               "SPOOL_MAX_BYTES: at distributor_spool_bytes this high new packets get 503 spool full.",
		"distributor_spool_segments":                "Live spool segment files.",
		"distributor_spool_pending_records":         "Spool records written and not yet settled (delivered or given up).",
		"distributor_spool_syncs_total":             "Spool write rounds (groups): one write and, with SPOOL_SYNC=always, one fdatasync each.",
		"distributor_spool_synced_records_total":    "Records the spool's write rounds covered; divided by distributor_spool_syncs_total, the mean group size.",
		"distributor_spool_sync_seconds":            "Time of one spool write round: write and fdatasync of a group.",
		"distributor_spool_replayed_packets_total":  "Records left by the last run and queued again at start.",
		"distributor_spool_recovered_records_total": "Records found unsettled in the spool at start.",
		"distributor_spool_corrupt_records_total":   "Spool records skipped at start: bad checksum or framing in the middle of a segment, or no valid packet.",
		"distributor_spool_torn_tails_total":        "Spool segments whose torn or garbage tail was cut at start.",
		"distributor_spool_disk_errors_total":       "Failed spool writes, syncs, truncates and deletes (the disk full, an I/O error).",
		"distributor_spool_failed_answers_total":    "202s held for a spool group whose write failed, answered 503 instead (their packets are still delivered).",
		"distributor_spool_left_on_shutdown_total":  "Packets still held when the shutdown timeout ran out, left in the spool for the next start (not dropped).",
	} {
		help[k] = v
	}
}

// SpoolJSON is the spool in /metrics-json. Not its directory: /metrics-json is
// also served on the ingest port, and where the spool lives is configuration,
// which only the admin API's config dump shows.
type SpoolJSON struct {
	Sync             string `json:"sync"`
	Bytes            int64  `json:"bytes"`
	MaxBytes         int64  `json:"max_bytes"`
	Segments         int64  `json:"segments"`
	PendingRecords   int64  `json:"pending_records"`
	Syncs            int64  `json:"syncs"`
	SyncedRecords    int64  `json:"synced_records"`
	ReplayedPackets  int64  `json:"replayed_packets"`
	RecoveredRecords int64  `json:"recovered_records"`
	CorruptRecords   int64  `json:"corrupt_records"`
	TornTails        int64  `json:"torn_tails"`
	DiskErrors       int64  `json:"disk_errors"`
	FailedAnswers    int64  `json:"failed_answers"`
	LeftOnShutdown   int64  `json:"left_on_shutdown"`
}

func (s *Server) spoolJSON(st *Stats) *SpoolJSON {
	if s.spool == nil {
		return nil
	}
	sp := s.spool.Stats()
	tot := st.Total()
	return &SpoolJSON{
		Sync:  s.cfg.SpoolSync.String(),
		Bytes: sp.Bytes, MaxBytes: s.cfg.SpoolMaxBytes, Segments: sp.Segments, PendingRecords: sp.Pending,
		Syncs: sp.Syncs, SyncedRecords: sp.SyncedRecords, ReplayedPackets: st.SpoolReplayed,
		RecoveredRecords: sp.Recovered, CorruptRecords: sp.CorruptRecords + st.SpoolInvalid,
		TornTails: sp.TornTails, DiskErrors: sp.DiskErrors, FailedAnswers: st.SpoolFailedAnswers,
		LeftOnShutdown: tot.LeftInSpool,
	}
}

// updateSpool sets the spool's families (only with SPOOL_DIR).
func (p *promSet) updateSpool(st *Stats, tot *DestStats) {
	j := p.srv.spoolJSON(st)
	if j == nil {
		return
	}
	c := func(name string, n int64) { p.set.GetOrCreateCounter(name).Set(uint64(max(n, 0))) }
	g := func(name string, x int64) { p.set.GetOrCreateGauge(name, nil).Set(float64(x)) }
	g("distributor_spool_bytes", j.Bytes)
	g("distributor_spool_max_bytes", j.MaxBytes)
	g("distributor_spool_segments", j.Segments)
	g("distributor_spool_pending_records", j.PendingRecords)
	c("distributor_spool_syncs_total", j.Syncs)
	c("distributor_spool_synced_records_total", j.SyncedRecords)
	c("distributor_spool_replayed_packets_total", j.ReplayedPackets)
	c("distributor_spool_recovered_records_total", j.RecoveredRecords)
	c("distributor_spool_corrupt_records_total", j.CorruptRecords)
	c("distributor_spool_torn_tails_total", j.TornTails)
	c("distributor_spool_disk_errors_total", j.DiskErrors)
	c("distributor_spool_failed_answers_total", j.FailedAnswers)
	c("distributor_spool_left_on_shutdown_total", tot.LeftInSpool)
}

// writeSpoolHist writes distributor_spool_sync_seconds (only with SPOOL_DIR).
func (s *Server) writeSpoolHist(w *bytes.Buffer) {
	if s.spool == nil {
		return
	}
	const name = "distributor_spool_sync_seconds"
	h := s.spoolSyncs.copy()
	writeHistHead(w, name)
	writeHist(w, name, `sync="`+s.cfg.SpoolSync.String()+`"`, syncBounds, &h)
}

// newLog gives shard sh its spool log. The writer's completions come back to the
// loop through Execute, once per group. A log has at most one group with its writer
// (the next is handed over only after Completed), so one completion slot per shard
// is enough: the writer fills it before Execute, the loop reads it in the runnable.
func (s *Server) newLog(sh *shard) *spool.Log {
	sh.spoolRun = gnet.RunnableFunc(func(context.Context) error {
		sh.onSpoolDone(sh.spoolDone)
		return nil
	})
	return s.spool.NewLog(sh.idx, func(c spool.Completion) {
		sh.spoolDone = c
		_ = sh.loop.Execute(s.ctx, sh.spoolRun)
	})
}

// unwrittenLimit bounds the bytes of records a loop holds that its writer has not
// written yet (the group being filled and the one being written). A disk that
// stalls (a sync taking seconds) would otherwise let them grow without bound
// while the analyzers deliver: delivered packets leave INGEST_BUFFER_SIZE, their
// records stay in the group until it is written. Room for one largest packet.
func (s *shard) unwrittenLimit() int64 { return max(32<<20, 2*s.srv.cfg.MaxBodyBytes) }

// spoolTakes reports whether the spool may take one more record on this loop.
func (s *shard) spoolTakes() bool {
	return s.spoolFill+s.spoolBusy < s.unwrittenLimit() && s.srv.spool.Admit()
}

// flushSpool hands the group being filled to the writer if it is idle, and keeps
// the unwritten byte counts: at a hand-off the fill becomes the writer's.
func (s *shard) flushSpool() {
	s.log.Flush()
	if g := s.log.Group(); g != s.handed {
		s.handed = g
		s.spoolBusy, s.spoolFill = s.spoolFill, 0
	}
}

// refuseSpool answers a packet the spool cannot take: 503 spool full (SPOOL_MAX_BYTES)
// or spool unavailable (the disk is failing, or its writes are more than
// unwrittenLimit behind).
func (s *shard) refuseSpool(out []byte, keep bool) []byte {
	if s.srv.spool.Bytes() >= s.srv.cfg.SpoolMaxBytes {
		s.stats.Rejected[rejectSpoolFull]++
		return s.answerBusy(out, "spool full", keep)
	}
	s.stats.Rejected[rejectSpoolFailed]++
	return s.answerBusy(out, "spool unavailable", keep)
}

// spoolAccepted writes the accepted packet (the parcel accept just placed) into the
// spool and answers 202, held until its group is written: fdatasynced with
// SPOOL_SYNC=always, written to the file (the page cache, which outlives the
// process) with interval. The answer is marked; hold moves it to the connection.
func (s *shard) spoolAccepted(out, id, body []byte, keep bool) []byte {
	s.placed.ref = s.log.Append(body)
	s.spoolFill += int64(len(body))
	start := len(out)
	out = codec.AppendAccepted(out, id, keep)
	if s.holdFrom < 0 {
		s.holdFrom = start
	}
	s.marks = append(s.marks, heldMark{group: s.log.Group(), start: start, end: len(out), keep: keep})
	return out
}

// hold moves the answers of this pass that must wait (from the first held 202 on,
// or all when the connection already waits) into in.held, and returns those that
// may be written now.
func (s *shard) hold(in *ingress, out []byte) []byte {
	if s.holdFrom < 0 {
		return out
	}
	base := len(in.held) - s.holdFrom
	in.held = append(in.held, out[s.holdFrom:]...)
	for _, m := range s.marks {
		m.start += base
		m.end += base
		in.marks = append(in.marks, m)
		in.waitFor = max(in.waitFor, m.group)
	}
	s.marks = s.marks[:0]
	if !in.waiting {
		in.waiting = true
		in.waitSlot = len(s.waiting)
		s.waiting = append(s.waiting, in)
	}
	now := out[:s.holdFrom]
	s.holdFrom = -1
	return now
}

// startPass readies the hold state for one pass over a connection's requests:
// a connection that already waits holds everything.
func (s *shard) startPass(in *ingress) {
	s.holdFrom = -1
	if in.waiting {
		s.holdFrom = 0
	}
	s.marks = s.marks[:0]
}

// whileHeld finishes onRequests for a connection whose answers are held: what it
// asked for that would end or park it (a close, a refusal, an admin page) waits
// for the release.
func (s *shard) whileHeld(in *ingress, c gnet.Conn, r handled) gnet.Action {
	s.flushDirty()
	s.flushSpool()
	switch {
	case r.refused:
		in.closeAfter = closeAfterLinger
	case r.close:
		in.closeAfter = closeAfterClose
	case r.page != pageNone:
		in.parked = true
		in.page = pageLater{page: r.page, keep: r.keepAlive, head: r.head}
	case len(in.held)+c.OutboundBuffered() > maxUnreadAnswers:
		s.stats.Rejected[rejectProtocol]++
		s.srv.logIngress("closing connection: client does not read its answers", len(in.held)+c.OutboundBuffered())
		return gnet.Close
	}
	return gnet.None
}

// unwait takes in off the shard's waiting list.
func (s *shard) unwait(in *ingress) {
	if !in.waiting {
		return
	}
	last := s.waiting[len(s.waiting)-1]
	s.waiting[in.waitSlot], last.waitSlot = last, in.waitSlot
	s.waiting[len(s.waiting)-1] = nil
	s.waiting = s.waiting[:len(s.waiting)-1]
	in.waiting = false
	in.held, in.marks, in.waitFor = in.held[:0], in.marks[:0], 0
}

// onSpoolDone runs on the loop when the log's writer finished a group: answers
// waiting for it (or an older one) are written, a failed group's 202s rewritten as
// 503, and the next group handed over.
func (s *shard) onSpoolDone(c spool.Completion) {
	s.now = nanotime()
	s.log.Completed(c)
	s.synced = c.Group + 1
	s.spoolBusy = 0
	if c.Err != nil && len(s.waiting) > 0 {
		for _, in := range s.waiting {
			for i := range in.marks {
				if in.marks[i].group == c.Group {
					in.marks[i].failed = true
				}
			}
		}
	}
	for i := 0; i < len(s.waiting); {
		in := s.waiting[i]
		if in.waitFor > c.Group {
			i++
			continue
		}
		s.releaseHeld(in) // takes it off s.waiting: slot i holds another now
	}
	s.flushSpool()
	s.flushDirty()
}

// releaseHeld writes in's held answers (a failed group's 202s as 503s), then does
// what the connection asked for meanwhile: a close, or an admin page.
func (s *shard) releaseHeld(in *ingress) {
	out := in.held
	for i := range in.marks {
		if in.marks[i].failed {
			out = s.rewriteFailed(in)
			break
		}
	}
	c := in.c
	after, page := in.closeAfter, in.page
	in.closeAfter, in.page = closeAfterNone, pageLater{}
	s.unwait(in)
	if c == nil || in.gone {
		return
	}
	_, _ = c.Write(out)
	switch {
	case after == closeAfterLinger:
		if !s.linger(in, c) {
			_ = s.loop.Close(c)
		}
	case after == closeAfterClose:
		_ = s.loop.Close(c)
	case page.page != pageNone:
		s.srv.renderAsync(c, in, page.page, page.keep, page.head)
	}
}

// rewriteFailed is in.held with every 202 of a failed group replaced by 503 spool
// write failed, built in the shard's scratch.
func (s *shard) rewriteFailed(in *ingress) []byte {
	out := s.out[:0]
	prev := 0
	for _, m := range in.marks {
		if !m.failed {
			continue
		}
		out = append(out, in.held[prev:m.start]...)
		s.stats.Responses[status202]--
		s.stats.Rejected[rejectSpoolFailed]++
		s.stats.SpoolFailedAnswers++
		out = s.answerBusy(out, "spool write failed", m.keep)
		prev = m.end
	}
	out = append(out, in.held[prev:]...)
	s.out = out
	return out
}

// spoolIdle hands what the log gathered to its writer and reports whether every
// group handed so far has completed: nothing of this shard is left unwritten.
func (s *shard) spoolIdle() bool {
	s.flushSpool()
	return s.log.Group() == s.synced
}

// quiesceSpool waits (at most 2 s) until every shard's log has written what it
// gathered: the last acks of a drained distributor, so a clean stop leaves nothing to
// send again, and the last groups, so held 202s are answered before the stop.
func (s *Server) quiesceSpool() {
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		idle := true
		for _, sh := range s.shardList() {
			ch := make(chan bool, 1)
			err := sh.loop.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				ch <- sh.spoolIdle()
				return nil
			}))
			if err != nil {
				return
			}
			select {
			case ok := <-ch:
				idle = idle && ok
			case <-time.After(time.Second):
				idle = false
			}
		}
		if idle {
			return
		}
		time.Sleep(5 * time.Millisecond) // a write round takes about a disk sync
	}
	s.log.Warn("spool: writes still under way at the stop; their packets may be sent again by the next start")
}

// leave gives up the shard's hold on a packet at the shutdown timeout without
// settling its record: it is delivered by the next start on the same SPOOL_DIR.
func (s *shard) leave(p *parcel, d *dest) {
	d.st.LeftInSpool++
	s.srv.budget.unreserve(cap(p.body.B))
	p.ref = spool.Ref{}
	s.recycle(p)
}

// adopt takes a recovered segment onto this shard's log and queues its records as
// accepted packets, routed like new traffic. An invalid record (it passed its
// checksum, so it was written so) is settled and counted.
func (s *shard) adopt(rec *spool.Recovered, records []spool.Record) {
	s.now = nanotime()
	s.sync()
	s.log.Adopt(rec)
	var pkt codec.Packet
	for i := range records {
		r := &records[i]
		if err := codec.ValidatePacket(r.Body, &pkt); err != nil {
			s.log.Settle(r.Ref)
			s.stats.SpoolInvalid++
			continue
		}
		s.requeue(r.Body, pkt.Messages, r.Ref)
	}
	s.flushSpool()
	s.flushDirty()
}

// requeue places a replayed packet: it holds a place in INGEST_BUFFER_SIZE even
// past the limit (it was accepted before the crash; Server.replay loads a segment
// only when there is room for it), and is routed by the scheduler like new traffic,
// skipping full analyzers when another has room.
func (s *shard) requeue(body []byte, msgs int, ref spool.Ref) {
	s.srv.budget.held.Add(1)
	s.refreshFull()
	a := s.cred.Pick(msgs, &s.full)
	if a < 0 {
		a = s.cred.Pick(msgs, nil)
	}
	if a < 0 {
		a = 0 // none eligible: it waits in this outbox and moves when one is (sync evacuates)
	}
	d := s.dests[a]
	p := s.newParcel(body, msgs)
	s.srv.budget.grew(cap(p.body.B)) // its bytes count in MAX_BUFFER_BYTES too, past it like its place
	p.ref = ref
	d.st.RoutedPackets++
	d.st.RoutedMessages += int64(msgs)
	s.enqueue(p, d, false)
	s.stats.AcceptedPackets++
	s.stats.AcceptedMessages += int64(msgs)
	s.stats.SpoolReplayed++
}

// replay feeds the records the last run left unsettled back in, one segment at a
// time on one goroutine: Load (disk I/O) here, then adopt on a shard's loop, round
// robin. A segment is loaded only when the backlog has room for it (or is empty),
// so at most about one segment is held beyond INGEST_BUFFER_SIZE; new traffic is
// accepted meanwhile.
func (s *Server) replay(recs []*spool.Recovered) {
	defer s.replayWG.Done()
	var n int
	for i, rec := range recs {
		if !s.waitReplayRoom(rec.Len()) {
			return
		}
		records, err := rec.Load()
		if err != nil {
			s.log.Error("spool: segment not replayed; it stays for the next start", "err", err)
			continue
		}
		sh := s.replayShard(i)
		if sh == nil {
			return
		}
		done := make(chan struct{})
		err = sh.loop.Execute(s.ctx, gnet.RunnableFunc(func(context.Context) error {
			defer close(done)
			sh.adopt(rec, records)
			return nil
		}))
		if err != nil {
			return
		}
		select {
		case <-done:
		case <-s.ctx.Done():
			return
		}
		n += len(records)
	}
	if len(recs) > 0 {
		s.log.Info("spool: replayed the records left by the last run", "records", n, "segments", len(recs))
	}
}

// waitReplayRoom waits until an analyzer is eligible and INGEST_BUFFER_SIZE has
// room for n more packets (or nothing is held: a segment larger than the limit
// still goes); false when the distributor stops first.
func (s *Server) waitReplayRoom(n int) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if s.closing.Load() {
			return false
		}
		held := s.budget.held.Load()
		if anyEligible(s.View()) && (held == 0 || held+int64(n) <= s.budget.ingestLimit.Load()) {
			return true
		}
		select {
		case <-s.ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// replayShard is the shard for the i-th segment, round robin over the shards that
// exist. Shards are made by a loop's first connection; before any emitter
// connected, the replay opens one loopback connection of its own to have one.
func (s *Server) replayShard(i int) *shard {
	for try := 0; ; try++ {
		if list := s.shardList(); len(list) > 0 {
			return list[i%len(list)]
		}
		if try%50 == 0 { // every second until a shard exists
			if c, err := net.DialTimeout("tcp", loopbackAddr(s.addr), time.Second); err == nil {
				defer c.Close()
			}
		}
		select {
		case <-s.ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// loopbackAddr is addr with an unspecified host (all interfaces) made loopback.
func loopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if ip != nil && ip.To4() == nil {
			host = "::1"
		} else {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}
