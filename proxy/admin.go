package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bytedance/sonic"
	"github.com/panjf2000/gnet/v2"

	"github.com/sluicelog/sluice/codec"
	"github.com/sluicelog/sluice/console"
	"github.com/sluicelog/sluice/sched"
)

// HealthJSON is GET /health: the seed's fields first, then which analyzers are out
// and why.
type HealthJSON struct {
	Status           string           `json:"status"`
	HealthyAnalyzers int              `json:"healthy_analyzers"`
	TotalAnalyzers   int              `json:"total_analyzers"`
	Timestamp        string           `json:"timestamp"`
	Analyzers        []AnalyzerHealth `json:"analyzers"`
}

// AnalyzerHealth is one analyzer in /health.
type AnalyzerHealth struct {
	Name            string  `json:"name"`
	URL             string  `json:"url"`
	State           string  `json:"state"`
	Reason          string  `json:"reason"` // "" while healthy; always present, as README.md lists it
	Weight          float64 `json:"weight"`
	EffectiveWeight float64 `json:"effective_weight"`
	Batch           bool    `json:"batch"`
}

func healthOf(m sched.Member) AnalyzerHealth {
	return AnalyzerHealth{Name: m.Name, URL: m.URL, State: m.State.String(), Reason: m.Reason, Weight: m.Weight, EffectiveWeight: m.Effective, Batch: m.Batch}
}

// MetricsJSON is GET /metrics-json: the seed's shape, plus fields it lacked.
type MetricsJSON struct {
	TotalPackets         int64            `json:"total_packets"`
	TotalMessages        int64            `json:"total_messages"`
	PacketsByAnalyzer    map[string]int64 `json:"packets_by_analyzer"`
	MessagesByAnalyzer   map[string]int64 `json:"messages_by_analyzer"`
	QueueDepthByAnalyzer map[string]int64 `json:"queue_depth_by_analyzer"`
	HealthyAnalyzers     int              `json:"healthy_analyzers"`
	TotalAnalyzers       int              `json:"total_analyzers"`
	Timestamp            string           `json:"timestamp"`

	DeliveredPackets  int64                    `json:"delivered_packets"`
	DeliveredMessages int64                    `json:"delivered_messages"`
	Queued            int64                    `json:"queued"`
	InFlight          int64                    `json:"in_flight"`
	Dropped           int64                    `json:"dropped"`
	Rejected          map[string]int64         `json:"rejected"`
	RetryAfterSeconds int32                    `json:"retry_after_seconds"`
	Analyzers         map[string]AnalyzerStats `json:"analyzers"`
	Spool             *SpoolJSON               `json:"spool,omitempty"` // only with SPOOL_DIR
}

// AnalyzerStats is one analyzer in /metrics-json.
type AnalyzerStats struct {
	State             string           `json:"state"`
	Weight            float64          `json:"weight"`
	EffectiveWeight   float64          `json:"effective_weight"`
	MessageShare      float64          `json:"message_share"`
	RoutedPackets     int64            `json:"routed_packets"`
	DeliveredPackets  int64            `json:"delivered_packets"`
	DeliveredMessages int64            `json:"delivered_messages"`
	Queued            int64            `json:"queued"`
	InFlight          int64            `json:"in_flight"`
	QueuedBytes       int64            `json:"queued_bytes"`
	Rerouted          int64            `json:"rerouted"`
	Retries           int64            `json:"retries"`
	Dropped           map[string]int64 `json:"dropped"`
	Failures          map[string]int64 `json:"failures"`
	Connections       int64            `json:"connections"`
}

// Health builds /health; ok is false (answer 503) when no analyzer can take packets.
func (s *Server) Health() (h HealthJSON, ok bool) {
	v := s.View()
	h = HealthJSON{Status: "healthy", HealthyAnalyzers: v.Healthy(), TotalAnalyzers: v.Live(), Timestamp: time.Now().UTC().Format(time.RFC3339)}
	for _, m := range membersOf(v) {
		h.Analyzers = append(h.Analyzers, healthOf(m))
	}
	switch {
	case h.HealthyAnalyzers == 0:
		h.Status = "unhealthy"
	case h.HealthyAnalyzers < h.TotalAnalyzers:
		h.Status = "degraded"
	}
	return h, h.HealthyAnalyzers > 0
}

// MetricsJSON builds /metrics-json from one consistent snapshot.
func (s *Server) MetricsJSON() MetricsJSON {
	v := s.View() // before the snapshot: st.Dests then covers every id of v
	st := s.Snapshot()
	tot := st.Total()
	m := MetricsJSON{
		TotalPackets: st.AcceptedPackets, TotalMessages: st.AcceptedMessages,
		PacketsByAnalyzer: map[string]int64{}, MessagesByAnalyzer: map[string]int64{}, QueueDepthByAnalyzer: map[string]int64{},
		HealthyAnalyzers: v.Healthy(), TotalAnalyzers: v.Live(), Timestamp: time.Now().UTC().Format(time.RFC3339),
		DeliveredPackets: tot.DeliveredPackets, DeliveredMessages: tot.DeliveredMessages,
		Queued: tot.Queued, InFlight: tot.InFlight, Dropped: tot.DroppedTotal(),
		Rejected: map[string]int64{}, RetryAfterSeconds: s.retryAfter.Load(), Analyzers: map[string]AnalyzerStats{},
		Spool: s.spoolJSON(&st),
	}
	for i, name := range rejectNames {
		m.Rejected[name] = st.Rejected[i]
	}
	for i, mem := range v.Members {
		if mem.State == StateRemoved {
			continue // a tombstone: its counts stay in the totals, it is no longer listed
		}
		d := &st.Dests[i]
		m.PacketsByAnalyzer[mem.Name] = d.RoutedPackets
		m.MessagesByAnalyzer[mem.Name] = d.RoutedMessages
		m.QueueDepthByAnalyzer[mem.Name] = d.Queued
		a := AnalyzerStats{
			State: mem.State.String(), Weight: mem.Weight, EffectiveWeight: mem.Effective,
			RoutedPackets: d.RoutedPackets, DeliveredPackets: d.DeliveredPackets, DeliveredMessages: d.DeliveredMessages,
			Queued: d.Queued, InFlight: d.InFlight, QueuedBytes: d.QueuedBytes, Rerouted: d.Rerouted, Retries: d.Retries,
			Dropped: map[string]int64{}, Failures: map[string]int64{}, Connections: d.Conns,
		}
		if tot.DeliveredMessages > 0 {
			a.MessageShare = float64(d.DeliveredMessages) / float64(tot.DeliveredMessages)
		}
		for r, name := range dropNames {
			a.Dropped[name] = d.Dropped[r]
		}
		for k, name := range failNames {
			a.Failures[name] = d.Failures[k]
		}
		m.Analyzers[mem.Name] = a
	}
	return m
}

// render produces an admin page's status and body.
func (s *Server) render(page int) (int, []byte, string) {
	switch page {
	case pageHealth:
		h, ok := s.Health()
		b, _ := sonic.Marshal(h)
		if !ok {
			return 503, b, "application/json"
		}
		return 200, b, "application/json"
	case pageMetricsJSON:
		b, _ := sonic.Marshal(s.MetricsJSON())
		return 200, b, "application/json"
	case pageLivez:
		return probeAnswer("not_live", s.Live())
	case pageReadyz:
		return probeAnswer("not_ready", s.Ready())
	default:
		var buf bytes.Buffer
		s.prom.WritePrometheus(&buf)
		return 200, buf.Bytes(), "text/plain; version=0.0.4"
	}
}

// renderAsync answers an admin request on the ingest port from a goroutine (it
// needs every loop's snapshot, which a loop must not wait for), then unparks the
// connection so the requests pipelined behind it are served in order.
func (s *Server) renderAsync(c gnet.Conn, in *ingress, page int, keep, head bool) {
	go func() {
		status, body, ctype := s.render(page)
		out := codec.AppendHeader(nil, status, keep, ctype, len(body), "")
		if !head {
			out = append(out, body...)
		}
		_ = c.AsyncWrite(out, func(c gnet.Conn, err error) error {
			in.parked = false
			if err == nil {
				in.sh.stats.Responses[statusIndex(status)]++ // the callback runs on the loop
			}
			if err != nil || !keep {
				return c.Close()
			}
			return c.Wake(nil)
		})
	}()
}

// adminRoute is one path of the admin listener.
type adminRoute struct {
	pattern string // net/http ServeMux pattern, without a method
	allow   string // methods answered, as in an Allow header; "" = no such page (404)
	open    bool   // scrapers and probes: any peer, no token
	serve   http.HandlerFunc
}

// adminRoutes is every path of the admin listener. What is not open is closed:
// the admin API, pprof and unknown paths need the token (or a loopback peer).
func (s *Server) adminRoutes() []adminRoute {
	page := func(p int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			status, body, ctype := s.render(p)
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(status)
			_, _ = w.Write(body)
		}
	}
	const get = "GET, HEAD"
	con := console.New(s.ctx, s.consoleSnapshot)
	return []adminRoute{
		{"/{$}", get, true, con.ServePage}, // the console: open like /metrics, its controls use the closed admin API
		{"/console/", get, true, con.ServeHTTP},
		{"/metrics", get, true, page(pageMetrics)},
		{"/metrics-json", get, true, page(pageMetricsJSON)},
		{"/health", get, true, page(pageHealth)},
		{"/livez", get, true, page(pageLivez)},
		{"/readyz", get, true, page(pageReadyz)},
		{"/admin/analyzers", get + ", POST", false, func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				s.adminAdd(w, r)
				return
			}
			writeJSON(w, 200, s.MetricsJSON().Analyzers)
		}},
		{"/admin/analyzers/{name}", "PUT, DELETE", false, s.adminMember},
		{"/admin/analyzers/{name}/{action}", "POST", false, s.adminAction},
		{"/admin/config", get, false, s.adminConfig},
		{"/debug/pprof/", get, false, pprof.Index},
		{"/debug/pprof/cmdline", get, false, pprof.Cmdline},
		{"/debug/pprof/profile", get, false, pprof.Profile},
		{"/debug/pprof/symbol", get, false, pprof.Symbol},
		{"/debug/pprof/trace", get, false, pprof.Trace},
		{"/", "", false, nil},
	}
}

// guard runs a route's checks in order: who (401/403), which method (405 with
// Allow), whether a browser on another site could have sent it (403/415).
func (s *Server) guard(rt adminRoute) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !rt.open && !s.authorize(w, r) {
			return
		}
		if rt.allow == "" {
			writeError(w, http.StatusNotFound, "not found")
			return
		}
		if !slices.Contains(strings.Split(rt.allow, ", "), r.Method) {
			w.Header().Set("Allow", rt.allow)
			first, _, _ := strings.Cut(rt.allow, ",")
			writeError(w, http.StatusMethodNotAllowed, "method not allowed, use "+first)
			return
		}
		if !rt.open && !sameSiteJSON(w, r) {
			return
		}
		rt.serve(w, r)
	}
}

// adminHandler is the admin listener's mux, every route behind its guard.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.adminRoutes() {
		mux.HandleFunc(rt.pattern, s.guard(rt))
	}
	return mux
}

// listenAdmin binds METRICS_ADDR, where serveAdmin serves Prometheus, JSON, probes,
// pprof and the admin API with net/http: nothing here is on the data path.
func (s *Server) listenAdmin() error {
	ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return &ConfigError{Name: "METRICS_ADDR", Value: s.cfg.MetricsAddr, Problem: err.Error()}
	}
	s.adminLn = ln
	return nil
}

// serveAdmin serves on the listener listenAdmin bound.
func (s *Server) serveAdmin() {
	s.adminSrv = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.adminSrv.Serve(s.adminLn) }()
	s.log.Info("admin API listening", "addr", s.adminLn.Addr().String(), "access", adminAccess(&s.cfg))
}

// adminAction is POST /admin/analyzers/{name}/drain|undrain|weight. The weight comes
// from ?value=W or a JSON body {"value":W}; drain and undrain take an empty body.
func (s *Server) adminAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	var body struct {
		Value *float64 `json:"value"`
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<10))
	if err == nil && len(bytes.TrimSpace(raw)) > 0 {
		err = sonic.Unmarshal(raw, &body)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, `body must be empty or a JSON object such as {"value":0.4}`)
		return
	}
	var before, after sched.Member
	switch action {
	case "drain", "undrain":
		before, after, err = s.ctl.setDrained(name, action == "drain")
	case "weight":
		v, perr := strconv.ParseFloat(strings.TrimSpace(r.URL.Query().Get("value")), 64)
		if body.Value != nil && !r.URL.Query().Has("value") {
			v, perr = *body.Value, nil
		}
		if perr != nil || !validWeight(v) {
			writeError(w, http.StatusBadRequest, "value must be a positive number")
			return
		}
		before, after, err = s.ctl.setWeight(name, v)
	default:
		writeError(w, http.StatusNotFound, "unknown action; use drain, undrain or weight")
		return
	}
	if err != nil {
		writeError(w, http.StatusNotFound, "no analyzer named "+strconv.Quote(name))
		return
	}
	s.logAdminChange(r, name, action, before, after)
	writeJSON(w, 200, healthOf(after))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := sonic.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
