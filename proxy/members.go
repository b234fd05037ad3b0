package proxy

// Run-time membership: POST /admin/analyzers adds an analyzer, DELETE
// /admin/analyzers/{name} removes one, PUT /admin/analyzers/{name} sets its weight.
// DNS discovery (dns.go) adds and removes through the same two Server methods. The
// controller changes the members and publishes a View; the shards learn of it in
// shard.sync like of every other change (docs/design.md, "Membership").

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/sluicelog/sluice/sched"
)

// AnalyzerEntry is one analyzer in the answers of the membership API: the weight
// as configured (or set) and the same weight normalised over all analyzers, which
// is what the scheduler uses, so "0.5" answered with a normalised 0.625 is
// explained by the answer itself.
type AnalyzerEntry struct {
	Name             string  `json:"name"`
	URL              string  `json:"url"`
	State            string  `json:"state"`
	Reason           string  `json:"reason,omitempty"`
	Weight           float64 `json:"weight"`            // configured, before normalisation
	NormalisedWeight float64 `json:"normalised_weight"` // weight / sum of all analyzers' weights
	EffectiveWeight  float64 `json:"effective_weight"`  // what the scheduler uses now (slow start, trial, 0 when out)
	Batch            bool    `json:"batch"`
}

func entryOf(m sched.Member) AnalyzerEntry {
	return AnalyzerEntry{Name: m.Name, URL: m.URL, State: m.State.String(), Reason: m.Reason,
		Weight: m.Configured, NormalisedWeight: m.Weight, EffectiveWeight: m.Effective, Batch: m.Batch}
}

// RemovedAnalyzer is the answer of DELETE /admin/analyzers/{name}: the analyzer as
// it was, and what it still held when the answer was written (0 unless its
// answers did not come within removeDrainWait).
type RemovedAnalyzer struct {
	Removed  AnalyzerEntry `json:"removed"`
	Queued   int64         `json:"queued"`
	InFlight int64         `json:"in_flight"`
}

// AddAnalyzer makes spec (URL, weight, optional name) an analyzer at run time: it
// starts unknown, is probed at once and ramps up in slow start once a probe
// answers. by says who asked, for the log.
func (s *Server) AddAnalyzer(spec AnalyzerSpec, by string) (AnalyzerEntry, error) {
	m, err := s.ctl.add(spec, by, false)
	if err != nil {
		return AnalyzerEntry{}, err
	}
	return entryOf(m), nil
}

// removeDrainWait bounds how long RemoveAnalyzer waits for the removed analyzer's
// in-flight requests to be answered (or failed and re-sent elsewhere).
func (s *Server) removeDrainWait() time.Duration {
	return min(2*s.cfg.SenderTimeout+time.Second, 4*time.Second)
}

// RemoveAnalyzer removes the analyzer called name: from the View published here on
// it takes nothing new; every shard has applied that View (moving its queued
// packets to the others) before this returns, and this waits, up to
// removeDrainWait, until what it had in flight was answered or re-sent elsewhere,
// so nothing is sent to it after the return. Its connections close once idle, its
// probes stop. Nothing accepted is lost: a packet with nowhere else to go waits in
// its outbox until some analyzer is eligible.
func (s *Server) RemoveAnalyzer(name, by string) (RemovedAnalyzer, error) {
	id, before, err := s.ctl.remove(name, by)
	if err != nil {
		return RemovedAnalyzer{}, err
	}
	out := RemovedAnalyzer{Removed: entryOf(before)}
	s.syncShards()
	deadline := time.Now().Add(s.removeDrainWait())
	for {
		st := s.Snapshot()
		d := st.Dests[id]
		out.Queued, out.InFlight = d.Queued, d.InFlight
		stuck := d.InFlight == 0 && !anyEligible(s.View()) // queued with nowhere to go: they wait for an analyzer
		if d.Queued+d.InFlight == 0 || stuck || time.Now().After(deadline) || s.closing.Load() {
			break
		}
		time.Sleep(10 * time.Millisecond) // polling the loops' counters, bounded by the deadline
	}
	if out.Queued+out.InFlight > 0 {
		s.log.Warn("analyzer removed with packets still held; they stay accounted and go to the first analyzer that can take them",
			"analyzer", name, "queued", out.Queued, "in_flight", out.InFlight)
	}
	return out, nil
}

func anyEligible(v *sched.View) bool {
	for i := range v.Members {
		if v.Members[i].Eligible {
			return true
		}
	}
	return false
}

// syncShards makes every shard apply the current View now (and flush what that
// moved), and waits until all have: after it, no shard routes by an older View.
func (s *Server) syncShards() {
	if s.stopped.Load() {
		return
	}
	for _, sh := range s.shardList() {
		done := make(chan struct{})
		err := sh.loop.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			sh.now = nanotime()
			sh.sync()
			sh.flushDirty()
			close(done)
			return nil
		}))
		if err != nil {
			continue // the engine is stopping
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second): // a stalled loop applies it at its next event
		}
	}
}

// analyzerBody is the body of POST /admin/analyzers.
type analyzerBody struct {
	URL    string   `json:"url"`
	Weight *float64 `json:"weight"`
	Name   string   `json:"name"`
}

// decodeStrict reads a small JSON object into v, refusing unknown fields and
// trailing data.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// validWeight is the one rule for a weight given through the admin API.
func validWeight(w float64) bool { return w > 0 && w <= 1e9 }

// validName: names appear in URL paths and metric labels.
func validName(n string) bool {
	if n == "" || len(n) > 100 {
		return false
	}
	for _, c := range []byte(n) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// defaultName names an analyzer added without a name: the URL's host name when it
// is one (as for ANALYZERS), else prefix-<ip>-<port>.
func defaultName(spec AnalyzerSpec, prefix string) string {
	if n, ok := hostLabel(spec.URL); ok {
		return n
	}
	return prefix + "-" + strings.NewReplacer(":", "-", "[", "", "]", "").Replace(spec.Addr)
}

// adminAdd is POST /admin/analyzers.
func (s *Server) adminAdd(w http.ResponseWriter, r *http.Request) {
	var b analyzerBody
	if err := decodeStrict(w, r, &b); err != nil {
		writeError(w, http.StatusBadRequest, `want a JSON object {"url":"http://host:port","weight":0.2,"name":"optional"}: `+err.Error())
		return
	}
	spec, ok := analyzerURL(strings.TrimSpace(b.URL))
	if !ok || b.URL == "" {
		writeError(w, http.StatusBadRequest, "url must be an http://host:port URL, got "+strconv.Quote(b.URL))
		return
	}
	if b.Weight == nil || !validWeight(*b.Weight) {
		writeError(w, http.StatusBadRequest, "weight must be a positive number (at most 1e9)")
		return
	}
	spec.Weight, spec.Name = *b.Weight, b.Name
	if spec.Name == "" {
		spec.Name = defaultName(spec, "analyzer")
	}
	if !validName(spec.Name) {
		writeError(w, http.StatusBadRequest, "name must be 1 to 100 letters, digits, '-', '_' or '.', got "+strconv.Quote(spec.Name))
		return
	}
	e, err := s.AddAnalyzer(spec, "admin "+r.RemoteAddr)
	switch {
	case errors.Is(err, errMemberExists):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, errMembersFull):
		writeError(w, http.StatusInsufficientStorage, err.Error())
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		w.Header().Set("Location", "/admin/analyzers/"+spec.Name)
		writeJSON(w, http.StatusCreated, e)
	}
}

// adminMember is DELETE (remove) and PUT (set the weight: {"weight":W}) of
// /admin/analyzers/{name}.
func (s *Server) adminMember(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if r.Method == http.MethodDelete {
		out, err := s.RemoveAnalyzer(name, "admin "+r.RemoteAddr)
		if err != nil {
			writeError(w, http.StatusNotFound, "no analyzer named "+strconv.Quote(name))
			return
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	var b struct {
		Weight *float64 `json:"weight"`
	}
	if err := decodeStrict(w, r, &b); err != nil || b.Weight == nil || !validWeight(*b.Weight) {
		writeError(w, http.StatusBadRequest, `want a JSON object {"weight":W} with W a positive number (at most 1e9)`)
		return
	}
	before, after, err := s.ctl.setWeight(name, *b.Weight)
	if err != nil {
		writeError(w, http.StatusNotFound, "no analyzer named "+strconv.Quote(name))
		return
	}
	s.logAdminChange(r, name, "weight", before, after)
	writeJSON(w, http.StatusOK, entryOf(after))
}

// logAdminChange logs one operator change of an analyzer at Info: who, which, what.
func (s *Server) logAdminChange(r *http.Request, name, action string, before, after sched.Member) {
	s.log.Info("admin change", "client", r.RemoteAddr, "analyzer", name, "action", action,
		"state", before.State.String()+" -> "+after.State.String(),
		"weight", strconv.FormatFloat(before.Weight, 'g', 4, 64)+" -> "+strconv.FormatFloat(after.Weight, 'g', 4, 64))
}
