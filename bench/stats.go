package bench

import (
	"slices"
	"time"
)

// Sample is one measurement: one driver against one target for one duration.
type Sample struct {
	Target      string
	Driver      string
	Round       int     // 1..Rounds; 0 for the constant-rate run
	Rate        float64 // offered packets/s; 0 = closed loop at full speed
	Outcome             // what the driver saw
	Delivered   int64   // packets the target forwarded during the run; -1 when it forwards nothing
	ProxyCPU    time.Duration
	AnalyzerCPU time.Duration
	CPUs        int // CPUs of the machine, for the busy share
	// The whole machine's CPU during the run (/proc/stat): what other processes
	// used shows how much the numbers were disturbed.
	MachineBusy, MachineTotal time.Duration
	// What the analyzers behind the target counted during the run (after the
	// distributor settled): packets, and the requests that carried them.
	UpstreamPackets, UpstreamRequests int64
	// A spool target's write rounds during the run and the records they carried.
	Syncs, SyncedRecords int64
}

// OthersShare is the share of the machine's CPU that processes outside the
// benchmark used during the run.
func (s Sample) OthersShare() float64 {
	if s.MachineTotal <= 0 {
		return 0
	}
	return max(0, float64(s.MachineBusy-s.ProxyCPU-s.AnalyzerCPU-s.LoadCPU)/float64(s.MachineTotal))
}

// AcceptedPerSec is the 2xx answers per second.
func (s Sample) AcceptedPerSec() float64 { return perSec(s.OK, s.Elapsed) }

func perSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Row is the medians of the samples of one target and driver.
type Row struct {
	Target, Driver string
	Rounds         int
	Rate           float64       // offered packets/s of a constant-rate row; 0 otherwise
	Accepted       float64       // 2xx answers per second
	Delivered      float64       // forwarded packets per second; negative: not a forwarder
	P50, P99, P999 time.Duration // latency of all requests
	Non2xx         float64       // share of requests not answered 2xx (errors included)
	ProxyCPU       time.Duration // per accepted packet: the server under test (all its processes)
	AnalyzerCPU    time.Duration // per accepted packet: the analyzers behind it
	LoadCPU        time.Duration // per accepted packet: the load generator
	Busy           float64       // CPU of server + analyzers + load generator over what the machine had
	Others         float64       // CPU of every other process over what the machine had
	PerUpstream    float64       // packets per request to the analyzers (batching); 0 without analyzers
	PeakRSS        int64         // bytes, peak resident set of the server under test over the run; 0 unknown
	SyncsPerSec    float64       // spool targets: write rounds (groups) per second
	GroupSize      float64       // spool targets: records per write round
}

// Summarize takes the median of every quantity over samples (one target, one
// driver, one rate). Medians are per quantity, so a row's p99 and its throughput may
// come from different rounds; each is the middle of its own spread.
func Summarize(samples []Sample) Row {
	if len(samples) == 0 {
		return Row{}
	}
	pick := func(f func(Sample) float64) float64 {
		xs := make([]float64, len(samples))
		for i, s := range samples {
			xs[i] = f(s)
		}
		return Median(xs)
	}
	perPacket := func(f func(Sample) time.Duration) time.Duration {
		return time.Duration(pick(func(s Sample) float64 {
			if s.OK == 0 {
				return 0
			}
			return float64(f(s)) / float64(s.OK)
		}))
	}
	s0 := samples[0]
	r := Row{
		Target: s0.Target, Driver: s0.Driver, Rounds: len(samples), Rate: s0.Rate,
		Accepted:    pick(Sample.AcceptedPerSec),
		Delivered:   -1,
		P50:         time.Duration(pick(func(s Sample) float64 { return float64(s.P50) })),
		P99:         time.Duration(pick(func(s Sample) float64 { return float64(s.P99) })),
		P999:        time.Duration(pick(func(s Sample) float64 { return float64(s.P999) })),
		Non2xx:      pick(func(s Sample) float64 { return share(s.Requests-s.OK, s.Requests) }),
		ProxyCPU:    perPacket(func(s Sample) time.Duration { return s.ProxyCPU }),
		AnalyzerCPU: perPacket(func(s Sample) time.Duration { return s.AnalyzerCPU }),
		LoadCPU:     perPacket(func(s Sample) time.Duration { return s.LoadCPU }),
		Busy: pick(func(s Sample) float64 {
			if s.Elapsed <= 0 || s.CPUs <= 0 {
				return 0
			}
			return float64(s.ProxyCPU+s.AnalyzerCPU+s.LoadCPU) / (float64(s.Elapsed) * float64(s.CPUs))
		}),
	}
	r.Others = pick(Sample.OthersShare)
	r.PerUpstream = pick(func(s Sample) float64 {
		if s.UpstreamRequests <= 0 {
			return 0
		}
		return float64(s.UpstreamPackets) / float64(s.UpstreamRequests)
	})
	r.SyncsPerSec = pick(func(s Sample) float64 { return perSec(s.Syncs, s.Elapsed) })
	r.GroupSize = pick(func(s Sample) float64 { return share(s.SyncedRecords, s.Syncs) })
	if s0.Delivered >= 0 {
		r.Delivered = pick(func(s Sample) float64 { return perSec(s.Delivered, s.Elapsed) })
	}
	return r
}

func share(part, whole int64) float64 {
	if whole <= 0 {
		return 0
	}
	return float64(part) / float64(whole)
}

// Median is the middle value of xs (the mean of the two middle ones for an even
// count); 0 for none. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Ratio compares two targets' accepted throughput under one driver: the ratio in
// each round (whose two measurements ran minutes apart at most) and their median.
type Ratio struct {
	Driver   string
	Num, Den string // target names
	PerRound []float64
	Median   float64
}

// RoundRatios is Ratio for every round in which both targets were measured with
// driver at full load; ok is false when there is no such round.
func RoundRatios(samples []Sample, driver, num, den string) (Ratio, bool) {
	byRound := func(target string) map[int]float64 {
		m := map[int]float64{}
		for _, s := range samples {
			if s.Driver == driver && s.Target == target && s.Round > 0 && s.Rate == 0 {
				m[s.Round] = s.AcceptedPerSec()
			}
		}
		return m
	}
	n, d := byRound(num), byRound(den)
	r := Ratio{Driver: driver, Num: num, Den: den}
	rounds := make([]int, 0, len(n))
	for round := range n {
		rounds = append(rounds, round)
	}
	slices.Sort(rounds)
	for _, round := range rounds {
		if dv, ok := d[round]; ok && dv > 0 {
			r.PerRound = append(r.PerRound, n[round]/dv)
		}
	}
	if len(r.PerRound) == 0 {
		return r, false
	}
	r.Median = Median(r.PerRound)
	return r, true
}

// Check is one of the targets, met or not.
type Check struct {
	What string // "sluice ≥ 0.8 × ceiling (wrk)"
	Got  string // "0.72"
	Met  bool
}
