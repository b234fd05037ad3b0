package proxy

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAffinitySettings(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		name string
	}{
		{map[string]string{"AFFINITY": "packet_id"}, "AFFINITY"},
		{map[string]string{"AFFINITY_LOAD_BOUND": "0.9"}, "AFFINITY_LOAD_BOUND"},
		{map[string]string{"AFFINITY_LOAD_BOUND": "x"}, "AFFINITY_LOAD_BOUND"},
		{map[string]string{"AFFINITY_LOAD_BOUND": "1000"}, "AFFINITY_LOAD_BOUND"},
	} {
		c.env["ANALYZERS"] = "http://a:1=1"
		_, err := LoadConfig(nil, env(c.env), io.Discard)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Name != c.name {
			t.Errorf("env %v: error %v, want a ConfigError naming %s", c.env, err, c.name)
		}
	}
	cfg, err := LoadConfig([]string{"--affinity", "emitter_id", "--affinity-load-bound", "1.5"}, env(map[string]string{"ANALYZERS": "http://a:1=1"}), io.Discard)
	if err != nil || cfg.Affinity != AffinityEmitterID || cfg.AffinityLoadBound != 1.5 {
		t.Fatalf("flags: %v %v %v", err, cfg.Affinity, cfg.AffinityLoadBound)
	}
	if d := DefaultConfig(); d.Affinity != AffinityOff || d.AffinityLoadBound != 1.25 {
		t.Fatalf("defaults %v %v", d.Affinity, d.AffinityLoadBound)
	}
}

// With AFFINITY=emitter_id every packet of one emitter reaches one analyzer (by
// packet_id at the analyzers), over two event loops and several connections, the
// message shares stay within AFFINITY_LOAD_BOUND × the weights, and everything
// accepted is delivered.
func TestAffinityEndToEnd(t *testing.T) {
	fakes := []*fakeAnalyzer{newFakeAnalyzer(t, false), newFakeAnalyzer(t, true), newFakeAnalyzer(t, false)}
	srv := startDistributor(t, joinAnalyzers(fakes, 0.5, 0.3, 0.2), func(c *Config) {
		c.Affinity = AffinityEmitterID
	})
	const emitters, perEmitter = 60, 25
	accepted := map[string]int{}
	clients := []*http.Client{{Timeout: 10 * time.Second}, {Timeout: 10 * time.Second}, {Timeout: 10 * time.Second}}
	for round := range perEmitter {
		for e := range emitters {
			id := "e" + strconv.Itoa(e) + "-" + strconv.Itoa(round)
			body := strings.Replace(string(packetBody(id, 1+(e*7+round)%20)), `"emitter_id":"test"`, `"emitter_id":"emitter-`+strconv.Itoa(e)+`"`, 1)
			code, _, answer := postPacket(t, clients[(e+round)%3], ingestURL(srv), []byte(body))
			if code != 202 {
				t.Fatalf("%s: %d %s", id, code, answer)
			}
			accepted[id] = 1
		}
	}
	settledNothingLost(t, srv, 10*time.Second)
	checkDelivered(t, accepted, fakes, false)
	where := map[string]map[int]bool{} // emitter -> analyzers that got its packets
	messages := make([]int, len(fakes))
	for i, f := range fakes {
		_, n, ids := f.counts()
		messages[i] = n
		for id := range ids {
			e, _, _ := strings.Cut(id, "-")
			if where[e] == nil {
				where[e] = map[int]bool{}
			}
			where[e][i] = true
		}
	}
	split := 0
	for e, as := range where {
		if len(as) != 1 {
			split++
			t.Errorf("emitter %s reached analyzers %v, want one", e, as)
		}
	}
	total := messages[0] + messages[1] + messages[2]
	for i, w := range []float64{0.5, 0.3, 0.2} {
		// The bound is per event loop: each loop may add its slack, 16 packets of
		// at most 20 messages.
		if share := float64(messages[i]) / float64(total); share > 1.25*w+2*16*20/float64(total) {
			t.Errorf("analyzer %d: message share %.3f over 1.25 × %.1f", i, share, w)
		}
	}
	t.Logf("messages per analyzer %v; %d of %d emitters split", messages, split, len(where))
	var expo bytes.Buffer
	srv.prom.WritePrometheus(&expo)
	if !strings.Contains(expo.String(), "distributor_affinity_moves_total 0\n") {
		t.Errorf("exposition lacks distributor_affinity_moves_total 0: %d moves", srv.Snapshot().AffinityMoves)
	}
}
