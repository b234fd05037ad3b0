package main

// The emitter of the harness: packets with unique ids at a steady rate, from many
// keep-alive connections, recording which ids were accepted (202), every answer's
// status per second, and the 202s' latency.

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// loadCfg is what one load run offers.
type loadCfg struct {
	url      string // http://host:port/ingest
	rate     int    // packets per second
	workers  int
	prefix   string // packet ids are prefix-<n>
	minBytes int    // message padding, drawn uniformly per packet
	maxBytes int
}

// loadResult is what a load run saw.
type loadResult struct {
	mu       sync.Mutex
	offered  int
	accepted []string
	status   map[int]map[int]int // second → status (0: no answer) → count
	lat202   []time.Duration
	start    time.Time
}

// load runs until ctx ends and returns what it saw.
func load(ctx context.Context, cfg loadCfg) *loadResult {
	res := &loadResult{status: map[int]map[int]int{}, start: time.Now()}
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.workers, MaxConnsPerHost: cfg.workers, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	jobs := make(chan int, 1<<16)
	var wg sync.WaitGroup
	for range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for n := range jobs {
				id := cfg.prefix + "-" + strconv.Itoa(n)
				buf.Reset()
				writePacket(&buf, id, cfg.minBytes+rand.N(cfg.maxBytes-cfg.minBytes+1))
				t0 := time.Now()
				status := 0
				resp, err := client.Post(cfg.url, "application/json", bytes.NewReader(buf.Bytes()))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				el := time.Since(t0)
				sec := int(t0.Sub(res.start) / time.Second)
				res.mu.Lock()
				if res.status[sec] == nil {
					res.status[sec] = map[int]int{}
				}
				res.status[sec][status]++
				if status == 202 {
					res.accepted = append(res.accepted, id)
					res.lat202 = append(res.lat202, el)
				}
				res.mu.Unlock()
			}
		}()
	}
	// Pace in 10 ms steps; a step's packets go at once. What is due follows the
	// clock, not the ticks: a ticker drops ticks its reader misses, and a busy
	// machine would then offer less than the rate without saying so.
	tick := time.NewTicker(10 * time.Millisecond)
	n := 0
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			due := int(time.Since(res.start).Seconds() * float64(cfg.rate))
			for ; n < due; n++ {
				select {
				case jobs <- n:
				default: // every worker busy and the queue full: offered, never sent
				}
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	res.offered = n
	return res
}

// padding is the message text large packets are cut from.
var padding = bytes.Repeat([]byte("x"), 1<<20)

// writePacket writes a valid packet with one message of about pad bytes.
func writePacket(b *bytes.Buffer, id string, pad int) {
	b.WriteString(`{"emitter_id":"chaos","packet_id":"`)
	b.WriteString(id)
	b.WriteString(`","messages":[{"timestamp":1640995200000,"level":"INFO","message":"`)
	b.Write(padding[:min(pad, len(padding))])
	b.WriteString(`"}]}`)
}

// p99 of the 202s' latency.
func (r *loadResult) p99() time.Duration {
	if len(r.lat202) == 0 {
		return 0
	}
	l := slices.Clone(r.lat202)
	slices.Sort(l)
	return l[(len(l)*99)/100]
}

// max503Share is the largest share of 503 answers among the answers of any second.
func (r *loadResult) max503Share() float64 {
	best := 0.0
	for _, st := range r.status {
		total := 0
		for _, n := range st {
			total += n
		}
		if total > 0 {
			best = max(best, float64(st[503])/float64(total))
		}
	}
	return best
}
