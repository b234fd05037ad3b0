package proxy

import (
	"encoding/json"
	"fmt"
	"github.com/sluicelog/sluice/cli"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/VictoriaMetrics/metrics"

	"github.com/sluicelog/sluice/sched"
)

// SIGHUP re-reads the configuration (file, environment, flags: LoadConfig again)
// and applies what can change while serving: the configured analyzers (added,
// removed, reweighted through the membership calls the admin API uses,
// reloader.analyzers) and the settings in liveSettings (live.go: buffer limits,
// breaker and probe settings, retries, LOG_LEVEL, ...). Everything else that
// changed (ports, LOOPS, SENDER_TIMEOUT_MS, batching, ...) is logged by name and
// takes effect on restart. A file that does not load or validate changes nothing.
// Reloads run one at a time on Main's goroutine.

func init() {
	help["distributor_config_reloads_total"] = "Configuration reloads on SIGHUP, by result: success (applied what can change live) or failure (the running configuration was kept)."
}

// ReloadResult is what one reload did.
type ReloadResult struct {
	File     string   `json:"file"`
	OK       bool     `json:"ok"`
	Applied  []string `json:"applied,omitempty"`          // live changes, e.g. "weight of analyzer-1: 0.5 -> 0.8", "MAX_FAILURES: 5 -> 3"
	Restart  []string `json:"restart_required,omitempty"` // settings that changed and take effect on restart
	Problems []string `json:"problems,omitempty"`         // why the file was refused
}

type reloader struct {
	srv    *Server
	args   []string
	lookup func(string) (string, bool)
	log    *slog.Logger
	all    []setting
	// configured holds the analyzers the configuration (file, ANALYZERS) last
	// asked for, by address, with the weight it gave them: a reload reconciles
	// these and leaves alone the ones the admin API or DNS discovery added.
	configured map[string]AnalyzerSpec
	ok         *metrics.Counter
	fail       *metrics.Counter

	level    *slog.LevelVar    // the logger's level: LOG_LEVEL
	shutdown atomic.Int64      // SHUTDOWN_TIMEOUT_SEC in force (a time.Duration): set by a reload, read by Main when serve returns
	inForce  map[string]string // each setting's value in force as written: the start's, live changes applied
}

// newReloader reloads srv's configuration; level is the level log filters on.
func newReloader(srv *Server, args []string, lookup func(string) (string, bool), log *slog.Logger, level *slog.LevelVar) *reloader {
	r := &reloader{
		srv: srv, args: args, lookup: lookup, log: log, all: settings(),
		level: level, inForce: maps.Clone(srv.cfg.raw),
		ok:   srv.prom.set.GetOrCreateCounter(`distributor_config_reloads_total{result="success"}`),
		fail: srv.prom.set.GetOrCreateCounter(`distributor_config_reloads_total{result="failure"}`),
	}
	r.shutdown.Store(int64(srv.cfg.ShutdownTimeout))
	r.configured = make(map[string]AnalyzerSpec, len(srv.cfg.Analyzers))
	for _, a := range srv.cfg.Analyzers {
		r.configured[a.Addr] = a
	}
	return r
}

// serve returns the first signal other than SIGHUP at once. A SIGHUP asks for a
// reload, which runs on a goroutine of its own, one at a time, with the SIGHUPs
// that arrive during one folded into one more: a reload can wait seconds on the
// loops (a removed analyzer's in-flight packets), and a SIGTERM must neither wait
// behind it nor be dropped by a full signal channel meanwhile.
func (r *reloader) serve(sig <-chan os.Signal) os.Signal {
	want := make(chan struct{}, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-want:
				r.reload()
			case <-done:
				return
			}
		}
	}()
	for s := range sig {
		if s != syscall.SIGHUP {
			return s
		}
		select {
		case want <- struct{}{}:
		default: // one is already due: it will read the file as it is by then
		}
	}
	return nil
}

// reload re-reads the configuration and applies what can change live.
func (r *reloader) reload() ReloadResult {
	cur := r.srv.cfg
	res := ReloadResult{File: cur.ConfigFile}
	if cur.ConfigFile == "" {
		r.log.Info("SIGHUP: no configuration file (CONFIG_FILE or --config), nothing to reload; still serving")
		return res
	}
	next, err := LoadConfigLookup(r.args, r.lookup, io.Discard)
	if err != nil {
		for _, p := range Problems(err) {
			res.Problems = append(res.Problems, p.Error())
		}
		r.fail.Inc()
		r.log.Error("config reload failed: keeping the running configuration", "file", res.File, "problems", res.Problems)
		return res
	}
	res.OK = true
	live := false
	for _, s := range r.all {
		if s.env == "ANALYZERS" {
			continue
		}
		old, now := r.inForce[s.env], next.raw[s.env]
		if sameValue(s, old, now) {
			continue
		}
		if apply := liveSettings[s.env]; apply != nil {
			apply(r, &next)
			r.inForce[s.env], live = now, true
			res.Applied = append(res.Applied, s.env+": "+cli.Redact(s.env, old)+" -> "+cli.Redact(s.env, now))
			continue
		}
		res.Restart = append(res.Restart, s.env)
		r.log.Warn("config reload: setting changed; it takes effect on restart", "setting", s.env,
			"running", cli.Redact(s.env, old), "file", cli.Redact(s.env, now))
	}
	if live {
		m := maps.Clone(r.inForce)
		r.srv.inForce.Store(&m) // for GET /admin/config, read on other goroutines
	}
	res.Applied = append(res.Applied, r.analyzers(next.Analyzers)...)
	r.ok.Inc()
	r.log.Info("config reloaded", "file", res.File, "applied", res.Applied, "restart_required", res.Restart)
	return res
}

// analyzers makes the configured analyzers what next says, through the same
// membership calls as the admin API: an address that is new is added (probed, then
// slow start), one that is gone is removed (its packets move to the others, nothing
// accepted is lost), a renamed one is removed and added under its new name, and a
// changed weight goes through the operator-weight path. A weight the file did not
// change is not touched, so a weight set through the admin API stays until the
// file changes it. Analyzers added by the admin API or DNS discovery are not the
// configuration's and are left alone. A change that cannot be made (the address was
// meanwhile added through the admin API, say) is logged and skipped.
func (r *reloader) analyzers(next []AnalyzerSpec) (applied []string) {
	want := make(map[string]bool, len(next))
	for _, a := range next {
		want[a.Addr] = true
	}
	for addr, old := range r.configured { // removals (and the old half of a rename) first
		renamed := want[addr] && r.specAt(next, addr).Name != old.Name
		if want[addr] && !renamed {
			continue
		}
		if _, err := r.srv.RemoveAnalyzer(old.Name, "config reload"); err != nil {
			r.log.Warn("config reload: cannot remove analyzer", "analyzer", old.Name, "err", err)
		} else {
			applied = append(applied, "removed "+old.Name+" ("+old.URL+")")
		}
		delete(r.configured, addr)
	}
	for _, a := range next {
		old, known := r.configured[a.Addr]
		if !known {
			if _, err := r.srv.AddAnalyzer(a, "config reload"); err != nil {
				r.log.Warn("config reload: cannot add analyzer", "analyzer", a.Name, "url", a.URL, "err", err)
				continue
			}
			r.configured[a.Addr] = a
			applied = append(applied, "added "+a.Name+" ("+a.URL+", weight "+fmtWeight(a.Weight)+")")
			continue
		}
		if math.Abs(a.Written-old.Written) > 1e-9 { // as written: normalised weights all move when one does
			if _, _, err := r.srv.ctl.setWeight(a.Name, a.Written); err == nil {
				applied = append(applied, fmt.Sprintf("weight of %s: %s -> %s", a.Name, fmtWeight(old.Written), fmtWeight(a.Written)))
			}
			r.configured[a.Addr] = a
		}
	}
	return applied
}

// specAt is the analyzer of specs at addr.
func (r *reloader) specAt(specs []AnalyzerSpec, addr string) AnalyzerSpec {
	for _, a := range specs {
		if a.Addr == addr {
			return a
		}
	}
	return AnalyzerSpec{}
}

func fmtWeight(w float64) string { return strconv.FormatFloat(w, 'f', -1, 64) }

// sameValue reports whether two values of a setting mean the same ("500" and
// "500.0" do), by running the setting's own parser on both.
func sameValue(s setting, a, b string) bool {
	if a == b {
		return true
	}
	var ca, cb Config
	if s.set(&ca, a) != nil || s.set(&cb, b) != nil {
		return false
	}
	return reflect.DeepEqual(ca, cb)
}

// EffectiveConfig is GET /admin/config: every setting by its environment name with
// the value in force (secrets "[redacted]"), the analyzers with their current
// configured weights (admin API and reload changes included), and the file.
type EffectiveConfig struct {
	ConfigFile string               `json:"config_file"`
	Settings   map[string]string    `json:"settings"`
	Analyzers  []ConfiguredAnalyzer `json:"analyzers"`
}

// ConfiguredAnalyzer is one analyzer in EffectiveConfig.
type ConfiguredAnalyzer struct {
	Name   string  `json:"name"`
	URL    string  `json:"url"`
	Weight float64 `json:"weight"`
}

// EffectiveConfig reports the configuration in force: a setting a reload applied
// live shows its new value. What a reload found changed but needing a restart is
// not in force, so it is not shown.
func (s *Server) EffectiveConfig() EffectiveConfig {
	cfg := s.cfg
	if raw := s.inForce.Load(); raw != nil {
		cfg.raw = *raw
	}
	return effectiveConfig(cfg, s.View(), settings())
}

func effectiveConfig(cfg Config, v *sched.View, all []setting) EffectiveConfig {
	out := EffectiveConfig{ConfigFile: cfg.ConfigFile, Settings: map[string]string{}, Analyzers: []ConfiguredAnalyzer{}}
	items := make([]string, 0, len(cfg.Analyzers))
	add := func(name, url string, w float64) {
		out.Analyzers = append(out.Analyzers, ConfiguredAnalyzer{Name: name, URL: url, Weight: w})
		items = append(items, url+"="+fmtWeight(w))
	}
	if v == nil {
		for _, a := range cfg.Analyzers {
			add(a.Name, a.URL, a.Weight)
		}
	}
	for _, m := range membersOf(v) { // the members in force: run-time adds in, removals out
		add(m.Name, m.URL, m.Weight)
	}
	for _, st := range all {
		val := cfg.raw[st.env]
		switch st.env {
		case "ANALYZERS":
			val = strings.Join(items, ",")
		case "LOOPS":
			val = strconv.Itoa(cfg.Loops) // 0 in the configuration means one per CPU
		}
		out.Settings[st.env] = cli.Redact(st.env, val)
	}
	return out
}

// membersOf lists v's members that are not removed (none for a nil View).
func membersOf(v *sched.View) []sched.Member {
	if v == nil {
		return nil
	}
	out := make([]sched.Member, 0, len(v.Members))
	for _, m := range v.Members {
		if m.State != StateRemoved {
			out = append(out, m)
		}
	}
	return out
}

// adminConfig serves GET /admin/config.
func (s *Server) adminConfig(w http.ResponseWriter, r *http.Request) {
	b, _ := json.MarshalIndent(s.EffectiveConfig(), "", "  ")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}
