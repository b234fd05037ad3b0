package main

import (
	"context"
	"io"
	"os"
	"testing"
	"time"
)

// TestMain lets the test binary be the harness's children too: the scenarios run
// this binary again as the distributor and the analyzers.
func TestMain(m *testing.M) {
	runChild()
	os.Exit(m.Run())
}

// TestChaosEndToEnd is the short version of `make chaos`: a full partition, a frozen
// analyzer and memory pressure, faults of 4 s, under a minute. Nothing accepted
// may be lost; a frozen analyzer, which honours X-Sluice-Deadline, must not count
// a packet that was sent elsewhere while it was frozen; and the distributor's peak
// RSS must stay under its bound with both analyzers frozen and packets up to 1 MiB.
func TestChaosEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("system test: real processes in network namespaces (make chaos for every fault)")
	}
	if raceEnabled {
		t.Skip("the race detector's memory and slowdown distort the RSS bound and the timings; make test runs this without it (unit-norace)")
	}
	if os.Geteuid() != 0 {
		t.Fatalf("the chaos test must run as root (uid %d): it creates network namespaces, veth pairs and routes; run `sudo go test ./chaos` or `sudo make test`", os.Geteuid())
	}
	var list []scenario
	for _, n := range []string{"partition", "freeze", "memory"} {
		sc, ok := byName(n)
		if !ok {
			t.Fatal("no scenario", n)
		}
		list = append(list, sc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rc := runCfg{rate: 1000, warm: 2 * time.Second, fault: 4 * time.Second, after: 3 * time.Second}
	rows, err := runAll(ctx, list, nil, rc, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		t.Logf("%s: offered %d accepted %d delivered %d duplicates %d lost %d max503 %.0f%% detect %v recover %v p99 %v %s",
			r.name, r.offered, r.accepted, r.delivered, r.duplicates, r.lost, 100*r.max503, r.detect, r.recover, r.p99, r.notes)
		if r.accepted == 0 || r.lost != 0 || r.delivered != r.accepted {
			t.Errorf("%s: accepted %d, delivered %d, lost %d: every accepted packet must be delivered", r.name, r.accepted, r.delivered, r.lost)
		}
		switch r.name {
		case "freeze":
			if r.duplicates != 0 {
				t.Errorf("freeze: %d packets counted by both analyzers; the frozen one must refuse what it reads after the deadline", r.duplicates)
			}
			if r.detect < 0 {
				t.Errorf("freeze: the distributor never noticed the frozen analyzer")
			}
		case "partition":
			if r.detect < 0 || r.recover < 0 {
				t.Errorf("partition: detect %v recover %v: the distributor must notice the partition and use the analyzer again after the heal", r.detect, r.recover)
			}
		case "memory":
			if r.peakRSS == 0 || r.peakRSS > memoryBound() {
				t.Errorf("memory: peak RSS %d MiB, bound %d MiB", r.peakRSS>>20, memoryBound()>>20)
			}
		}
	}
}
