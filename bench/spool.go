package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// The spool rows (issue #15's benchmarks): the distributor of the "sluice" row
// with SPOOL_DIR in each sync mode, measured in the same rounds, and the disk's own
// write+fdatasync measured by a bare loop in the same directory and run, so the
// 202's latency can be read against the disk.

// Ports of the spool targets, from Config.PortBase (+1: their METRICS_ADDR).
const (
	portSpoolInterval = 52
	portSpoolAlways   = 56
)

// spoolCounters is the part of /metrics-json's spool object the harness reads.
type spoolCounters struct {
	Spool *struct {
		Syncs         int64 `json:"syncs"`
		SyncedRecords int64 `json:"synced_records"`
	} `json:"spool"`
}

// spoolTotals reads a spool target's write rounds and the records they carried.
func (t *target) spoolTotals(ctx context.Context) (syncs, records int64, err error) {
	if !t.spool {
		return 0, 0, nil
	}
	var m spoolCounters
	if err := getJSON(ctx, t.metricsURL+"/metrics-json", &m); err != nil {
		return 0, 0, err
	}
	if m.Spool == nil {
		return 0, 0, fmt.Errorf("%s: /metrics-json has no spool", t.name)
	}
	return m.Spool.Syncs, m.Spool.SyncedRecords, nil
}

// DiskSync is the disk's own write+fdatasync latency: a bare loop writing one
// packet-sized record and syncing, in the spool's directory.
type DiskSync struct {
	Dir      string
	Syncs    int
	P50, P99 time.Duration
}

// measureDiskSync runs the bare loop in dir for d.
func measureDiskSync(dir string, d time.Duration) (*DiskSync, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "fdatasync-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	rec := make([]byte, 16+1100) // a spool record of the bench's packet
	var lat []time.Duration
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		t0 := time.Now()
		if _, err := f.Write(rec); err != nil {
			return nil, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("no fdatasync in %s", d)
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return &DiskSync{Dir: dir, Syncs: len(lat), P50: q(0.5), P99: q(0.99)}, nil
}

// spoolDir is where the spool targets keep their spools (emptied at start).
func (h *harness) spoolDir(name string) (string, error) {
	dir, err := filepath.Abs(filepath.Join(h.dir, "spool", name))
	if err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// startSpoolTargets starts the two spool targets on the batch analyzers.
func (h *harness) startSpoolTargets(ctx context.Context, batch []*proc) ([]*target, error) {
	var out []*target
	for _, s := range []struct {
		name, mode string
		port       int
	}{{TargetSpoolInterval, "interval", portSpoolInterval}, {TargetSpoolAlways, "always", portSpoolAlways}} {
		dir, err := h.spoolDir(s.mode)
		if err != nil {
			return nil, err
		}
		t, err := h.startSluice(ctx, s.name, h.cfg.PortBase+s.port, batch, true, "SPOOL_DIR="+dir, "SPOOL_SYNC="+s.mode)
		if err != nil {
			return nil, err
		}
		t.spool = true
		out = append(out, t)
	}
	return out, nil
}

// spoolRows are the full-load rows the spool table compares: memory and both
// spool modes, per driver.
func spoolRows(rows []Row) []Row {
	var out []Row
	has := false
	for _, r := range rows {
		has = has || r.Target == TargetSpoolAlways || r.Target == TargetSpoolInterval
	}
	if !has {
		return nil
	}
	for _, r := range rows {
		if r.Target == TargetSluice || r.Target == TargetSpoolInterval || r.Target == TargetSpoolAlways {
			out = append(out, r)
		}
	}
	return out
}

var spoolHeader = []string{"target", "driver", "accepted pkt/s", "p50", "p99", "CPU/pkt server", "syncs/s", "records/sync"}

func spoolCells(r Row) []string {
	syncs, group := "—", "—"
	if r.SyncsPerSec > 0 {
		syncs, group = Count(r.SyncsPerSec), fmt.Sprintf("%.1f", r.GroupSize)
	}
	return []string{r.Target, r.Driver, Count(r.Accepted), Latency(r.P50), Latency(r.P99), Micros(r.ProxyCPU), syncs, group}
}

func spoolTitle(d *DiskSync) string {
	t := "The spool (SPOOL_DIR) against memory, full load, the same rounds (p50/p99: the 202 as the driver saw it)"
	if d != nil {
		t += fmt.Sprintf("; the disk's own write+fdatasync of one record in the spool's directory, a bare loop in the same run: p50 %s, p99 %s (%d syncs)",
			Latency(d.P50), Latency(d.P99), d.Syncs)
	}
	return t
}

// spoolChecks states the spool targets against the full-load rows: per
// driver, always ≥ 0.6× and interval ≥ 0.9× the memory mode's throughput (the
// median of per-round ratios), and always's p99 ≤ 2× the disk's sync p99 + the
// memory mode's p99.
func spoolChecks(ratios []Ratio, rows []Row, disk *DiskSync) []Check {
	var cs []Check
	for _, r := range ratios {
		if r.Den != TargetSluice {
			continue
		}
		switch r.Num {
		case TargetSpoolAlways:
			cs = append(cs, Check{What: fmt.Sprintf("spool always ≥ 0.6 × memory (%s)", r.Driver), Got: checkRatio(r.Median, 0.6), Met: r.Median >= 0.6})
		case TargetSpoolInterval:
			cs = append(cs, Check{What: fmt.Sprintf("spool interval ≥ 0.9 × memory (%s)", r.Driver), Got: checkRatio(r.Median, 0.9), Met: r.Median >= 0.9})
		}
	}
	if disk == nil {
		return cs
	}
	for _, a := range rows {
		if a.Target != TargetSpoolAlways {
			continue
		}
		for _, m := range rows {
			if m.Target == TargetSluice && m.Driver == a.Driver {
				limit := 2*disk.P99 + m.P99
				cs = append(cs, Check{What: fmt.Sprintf("spool always p99 ≤ 2 × disk sync p99 + memory p99 (%s, %s)", a.Driver, Latency(limit)),
					Got: Latency(a.P99), Met: a.P99 > 0 && a.P99 <= limit})
			}
		}
	}
	return cs
}
