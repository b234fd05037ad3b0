package proxy

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// frontAnalyzer is a fakeAnalyzer (which records what it got by packet_id) behind
// a front that counts health probes and, until release, holds every /ingest answer.
type frontAnalyzer struct {
	f      *fakeAnalyzer
	url    string
	probes atomic.Int64
	gate   chan struct{}
	once   sync.Once
}

func newFrontAnalyzer(t *testing.T, held bool) *frontAnalyzer {
	fa := &frontAnalyzer{f: newFakeAnalyzer(t, false), gate: make(chan struct{})}
	if !held {
		fa.release()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			fa.probes.Add(1)
		} else {
			<-fa.gate
		}
		fa.f.handler.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { fa.release(); srv.Close() })
	fa.url = srv.URL
	return fa
}

func (fa *frontAnalyzer) release() { fa.once.Do(func() { close(fa.gate) }) }

// liveYAML is a configuration file with one analyzer; extra adds settings.
func liveYAML(url, extra string) string {
	return "port: 0\nmetrics_addr: 127.0.0.1:0\nloops: 2\nslow_start_sec: 0\nhealth_check_interval_sec: 0.2\nsender_timeout_ms: 30000\n" + extra +
		"analyzers:\n  - {url: '" + url + "', weight: 1, name: solo}\n"
}

// reloadTo rewrites the file and reloads; the reload must apply exactly want live
// and list nothing as needing a restart.
func reloadTo(t *testing.T, r *reloader, path, yaml string, want ...string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	res := r.reload()
	if !res.OK || strings.Join(res.Applied, ",") != strings.Join(want, ",") || len(res.Restart) != 0 {
		t.Fatalf("reload: %+v; want applied %q and nothing needing a restart", res, want)
	}
}

// Lowering INGEST_BUFFER_SIZE below what is held refuses new packets (503) and
// keeps every held one; raising it lets more in at once. Every accepted packet is
// delivered, no refused one is.
func TestReloadLiveIngestBufferSize(t *testing.T) {
	fa := newFrontAnalyzer(t, true)
	path := writeConfig(t, liveYAML(fa.url, "ingest_buffer_size: 10\n"))
	srv, r := loadedServer(t, path, io.Discard)
	s := newSender(ingestURL(srv), 1)
	send := func(id string, want int) {
		t.Helper()
		if code, _ := s.send(t, id, 1); code != want {
			t.Fatalf("POST %s: %d, want %d", id, code, want)
		}
	}
	for i := range 6 {
		send("held-"+strconv.Itoa(i), 202)
	}

	reloadTo(t, r, path, liveYAML(fa.url, "ingest_buffer_size: 4\n"), "INGEST_BUFFER_SIZE: 10 -> 4")
	send("refused-1", 503) // 6 held, limit 4

	reloadTo(t, r, path, liveYAML(fa.url, "ingest_buffer_size: 8\n"), "INGEST_BUFFER_SIZE: 4 -> 8")
	send("more-0", 202)
	send("more-1", 202)
	send("refused-2", 503) // 8 held, limit 8

	fa.release()
	settledNothingLost(t, srv, 10*time.Second)
	_, _, ids := fa.f.counts()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.accepted {
		if ids[id] != 1 {
			t.Errorf("accepted %s delivered %d times, want once", id, ids[id])
		}
	}
	if len(s.accepted) != 8 || len(ids) != 8 || ids["refused-1"]+ids["refused-2"] != 0 {
		t.Fatalf("accepted %d, analyzer got %v; want the 8 accepted, no refused one", len(s.accepted), ids)
	}
}

// A lower MAX_FAILURES opens the breaker on the failures that follow (the loops
// count against the new value); under the old value the same failures did not.
func TestReloadLiveMaxFailures(t *testing.T) {
	fa := newFrontAnalyzer(t, false)
	path := writeConfig(t, liveYAML(fa.url, "max_failures: 100\nsender_retries: 1\n"))
	srv, r := loadedServer(t, path, io.Discard)
	fa.f.status.Store(500)
	s := newSender(ingestURL(srv), 1)
	dropped := func(n int64) func() bool {
		return func() bool {
			st := srv.Snapshot()
			tot := st.Total()
			return tot.DroppedTotal() >= n
		}
	}
	s.send(t, "fail-1", 1)
	waitFor(t, "the first packet dropped after two failed attempts", 10*time.Second, dropped(1))
	if opens := srv.ctl.breakerCounts()[0].opens; opens != 0 {
		t.Fatalf("breaker opened %d times after 2 failures with MAX_FAILURES 100", opens)
	}

	reloadTo(t, r, path, liveYAML(fa.url, "max_failures: 3\nsender_retries: 1\n"), "MAX_FAILURES: 100 -> 3")
	s.send(t, "fail-2", 1) // failures 3 and 4 in a row
	waitFor(t, "the breaker open at the new MAX_FAILURES", 10*time.Second, func() bool {
		return srv.ctl.breakerCounts()[0].opens >= 1
	})
}

// SENDER_RETRIES counts from the next failed send: a packet failing everywhere is
// dropped after one attempt at 0, after three at 2.
func TestReloadLiveSenderRetries(t *testing.T) {
	fa := newFrontAnalyzer(t, false)
	path := writeConfig(t, liveYAML(fa.url, "max_failures: 1000\nsender_retries: 0\n"))
	srv, r := loadedServer(t, path, io.Discard)
	fa.f.status.Store(500)
	s := newSender(ingestURL(srv), 1)
	settled := func(dropped int64) Stats {
		t.Helper()
		var st Stats
		waitFor(t, "the packet dropped", 10*time.Second, func() bool {
			st = srv.Snapshot()
			tot := st.Total()
			return tot.DroppedTotal() >= dropped
		})
		return st
	}
	s.send(t, "once", 1)
	if st := settled(1); st.Total().Retries != 1 {
		t.Fatalf("SENDER_RETRIES 0: %d failed attempts, want 1", st.Total().Retries)
	}
	reloadTo(t, r, path, liveYAML(fa.url, "max_failures: 1000\nsender_retries: 2\n"), "SENDER_RETRIES: 0 -> 2")
	s.send(t, "thrice", 1)
	if st := settled(2); st.Total().Retries != 1+3 {
		t.Fatalf("SENDER_RETRIES 2: %d failed attempts in all, want 1+3", st.Total().Retries)
	}
}

// LOG_LEVEL changes what the running logger writes: the debug line for each
// failed probe of a down analyzer appears once it is debug.
func TestReloadLiveLogLevel(t *testing.T) {
	fa := newFrontAnalyzer(t, false)
	fa.f.health.Store(503)
	path := writeConfig(t, liveYAML(fa.url, "down_probe_interval_ms: 20\n"))
	logs := &syncWriter{w: &bytes.Buffer{}}
	_, r := loadedServer(t, path, logs)
	const line = "analyzer still down"
	waitFor(t, "the analyzer seen down", 10*time.Second, func() bool { return strings.Contains(logs.String(), `to=open`) })
	n := fa.probes.Load()
	waitFor(t, "three more probes", 10*time.Second, func() bool { return fa.probes.Load() >= n+3 })
	if strings.Contains(logs.String(), line) {
		t.Fatalf("debug line %q at LOG_LEVEL info:\n%s", line, logs.String())
	}

	reloadTo(t, r, path, liveYAML(fa.url, "down_probe_interval_ms: 20\nlog_level: debug\n"), "LOG_LEVEL: info -> debug")
	waitFor(t, "a debug line", 10*time.Second, func() bool { return strings.Contains(logs.String(), line) })
}

// docs/operations.md's Reload table lists every setting once, as live exactly
// when liveSettings applies it.
func TestReloadDocsTable(t *testing.T) {
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\| (live|restart)")
	seen := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		if _, dup := seen[m[1]]; dup {
			t.Errorf("%s listed twice", m[1])
		}
		seen[m[1]] = m[2]
	}
	for _, s := range settings() {
		want := "restart"
		if liveSettings[s.env] != nil || s.env == "ANALYZERS" { // ANALYZERS: reconciled by reloader.analyzers
			want = "live"
		}
		if seen[s.env] != want {
			t.Errorf("docs/operations.md Reload table: %s is %q, want %q", s.env, seen[s.env], want)
		}
		delete(seen, s.env)
	}
	for env := range seen {
		t.Errorf("docs/operations.md Reload table lists %s, which is no setting", env)
	}
	names := map[string]bool{}
	for _, s := range settings() {
		names[s.env] = true
	}
	for env := range liveSettings {
		if !names[env] {
			t.Errorf("liveSettings has %s, which is no setting", env)
		}
	}
}

// A SIGTERM is answered at once while a reload is still waiting on the loops
// (here: removing an analyzer whose answers are held, which waits up to
// removeDrainWait), and is not lost behind SIGHUPs (found in review: reloads ran
// on the signal goroutine, and the one-slot channel dropped the SIGTERM).
func TestSIGTERMDoesNotWaitForAReload(t *testing.T) {
	held := newFrontAnalyzer(t, true)
	other := newFrontAnalyzer(t, false)
	two := func(first string) string {
		return "port: 0\nmetrics_addr: 127.0.0.1:0\nloops: 2\nslow_start_sec: 0\nhealth_check_interval_sec: 0.2\nsender_timeout_ms: 30000\nanalyzers:\n" +
			first + "  - {url: '" + other.url + "', weight: 1, name: other}\n"
	}
	path := writeConfig(t, two("  - {url: '"+held.url+"', weight: 1000, name: held}\n"))
	srv, r := loadedServer(t, path, io.Discard)
	s := newSender(ingestURL(srv), 1)
	for i := range 5 { // mostly to the held analyzer: in flight there, unanswered
		if code, _ := s.send(t, "held-"+strconv.Itoa(i), 1); code != 202 {
			t.Fatalf("POST: %d", code)
		}
	}
	waitFor(t, "the packets in flight to the held analyzer", 5*time.Second, func() bool {
		return srv.Snapshot().Dests[0].InFlight == 5
	})
	if err := os.WriteFile(path, []byte(two("")), 0o600); err != nil {
		t.Fatal(err)
	}
	sig := make(chan os.Signal, 4)
	got := make(chan os.Signal, 1)
	go func() { got <- r.serve(sig) }()
	sig <- syscall.SIGHUP // the reload removes "held" and waits for its answers
	sig <- syscall.SIGHUP
	sig <- syscall.SIGHUP
	sig <- syscall.SIGTERM
	select {
	case s := <-got:
		if s != syscall.SIGTERM {
			t.Fatalf("serve returned %v, want SIGTERM", s)
		}
	case <-time.After(time.Second): // the removal alone waits up to removeDrainWait (4 s here)
		t.Fatal("SIGTERM not answered within 1 s while a reload waited on a removal")
	}
	held.release()
}
