// Command sluice-soak overloads a distributor for a while and records what
// backpressure costs: peak memory against the bound the configuration promises,
// and how fast 503 answers come back. `make soak` runs it; results go to
// docs/benchmarks.md by hand, with the command line it prints.
//
// The analyzers are made the bottleneck (each answer held back PROCESSING_DELAY_MS,
// few connections), so a load generator on the same machine can offer about twice
// what the pipeline can take. Capacity is measured first, flat out, then the soak
// offers 2× that at a constant rate.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	bin := flag.String("sluice", "bin/sluice", "the sluice binary")
	soakFor := flag.Duration("duration", 60*time.Second, "how long to overload")
	factor := flag.Float64("factor", 2, "offered load as a multiple of the measured capacity")
	delay := flag.Int("delay-ms", 5, "analyzer answer delay, ms (sets the capacity)")
	conns := flag.Int("conns", 64, "load generator connections")
	port := flag.Int("port", 38080, "first of the loopback ports used")
	flag.Parse()
	if err := run(*bin, *soakFor, *factor, *delay, *conns, *port); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-soak:", err)
		os.Exit(1)
	}
}

// The distributor's configuration for the soak; the memory bound is derived from it.
const (
	ingestBuffer = 4000
	queueSize    = 1000
	queueBytes   = 4 << 20
	maxBody      = 1 << 20
	analyzers    = 3
)

func run(bin string, soakFor time.Duration, factor float64, delay, conns, port int) error {
	dir, err := os.MkdirTemp("", "sluice-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = p.Process.Signal(os.Interrupt)
			_ = p.Wait()
		}
	}()
	start := func(name string, env []string, args ...string) (*exec.Cmd, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		procs = append(procs, cmd)
		return cmd, nil
	}
	var spec []string
	for i := 1; i <= analyzers; i++ {
		p := port + i
		if _, err := start("analyzer-"+strconv.Itoa(i), []string{"PORT=127.0.0.1:" + strconv.Itoa(p), "PROCESSING_DELAY_MS=" + strconv.Itoa(delay), "ANALYZER_BATCH=false"}, "analyzer"); err != nil {
			return err
		}
		spec = append(spec, "http://127.0.0.1:"+strconv.Itoa(p)+"="+[]string{"0.5", "0.3", "0.2"}[i-1])
	}
	env := []string{
		"PORT=" + strconv.Itoa(port), "METRICS_ADDR=127.0.0.1:" + strconv.Itoa(port+10),
		"ANALYZERS=" + strings.Join(spec, ","), "LOOPS=2", "UPSTREAM_CONNS=1", "PIPELINE_DEPTH=4",
		"INGEST_BUFFER_SIZE=" + strconv.Itoa(ingestBuffer), "PER_ANALYZER_QUEUE_SIZE=" + strconv.Itoa(queueSize),
		"PER_ANALYZER_QUEUE_BYTES=" + strconv.Itoa(queueBytes), "MAX_BODY_BYTES=" + strconv.Itoa(maxBody),
		"LOG_LEVEL=warn",
	}
	dist, err := start("distributor", env, "distributor")
	if err != nil {
		return err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if err := waitHealthy(base+"/health", 10*time.Second); err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}, Timeout: 10 * time.Second}

	fmt.Printf("measuring capacity: flat out for 10 s, %d connections\n", conns)
	capRes := load(client, base, conns, 0, 10*time.Second, "cap")
	capacity := float64(capRes.accepted) / capRes.elapsed.Seconds()
	fmt.Printf("capacity: %.0f accepted packets/s (%d of %d answered 503)\n", capacity, capRes.rejected, capRes.sent)

	offered := capacity * factor
	fmt.Printf("soak: %.0f packets/s offered (%.1f× capacity) for %v\n", offered, factor, soakFor)
	stop := make(chan struct{})
	var peak atomic.Int64
	go func() { // sample VmHWM once a second
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				peak.Store(max(peak.Load(), hwm(dist.Process.Pid)))
			}
		}
	}()
	res := load(client, base, conns, offered, soakFor, "soak")
	close(stop)
	peak.Store(max(peak.Load(), hwm(dist.Process.Pid)))

	// Recovery: the overload ends; everything accepted must drain.
	var m struct {
		Total     int64 `json:"total_packets"`
		Delivered int64 `json:"delivered_packets"`
		Dropped   int64 `json:"dropped"`
		Queued    int64 `json:"queued"`
		InFlight  int64 `json:"in_flight"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := getJSON(base+"/metrics-json", &m); err != nil {
			return err
		}
		if m.Queued+m.InFlight == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	bound := int64(analyzers*queueBytes) + int64(ingestBuffer)*2048 // packet bytes + parcel bookkeeping
	fmt.Printf("\nresult (distributor: LOOPS=2 UPSTREAM_CONNS=1 PIPELINE_DEPTH=4 INGEST_BUFFER_SIZE=%d PER_ANALYZER_QUEUE_SIZE=%d PER_ANALYZER_QUEUE_BYTES=%d; analyzers PROCESSING_DELAY_MS=%d, plain)\n",
		ingestBuffer, queueSize, queueBytes, delay)
	fmt.Printf("| offered pkt/s | accepted pkt/s | 503 share | 202 p50 / p99 | 503 p50 / p99 | peak RSS | packet-memory bound | dropped | delivered = accepted |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|\n")
	fmt.Printf("| %.0f | %.0f | %.1f %% | %s / %s | %s / %s | %.1f MiB | %.1f MiB + runtime | %d | %v |\n",
		float64(res.sent)/res.elapsed.Seconds(), float64(res.accepted)/res.elapsed.Seconds(),
		100*float64(res.rejected)/float64(max(res.sent, 1)),
		pct(res.ok, 0.5), pct(res.ok, 0.99), pct(res.busy, 0.5), pct(res.busy, 0.99),
		float64(peak.Load())/(1<<20), float64(bound)/(1<<20), m.Dropped, m.Delivered == m.Total)
	if res.noRetryAfter > 0 {
		return fmt.Errorf("%d 503 answers had no Retry-After", res.noRetryAfter)
	}
	if m.Dropped != 0 || m.Delivered != m.Total {
		return fmt.Errorf("after the soak: accepted %d, delivered %d, dropped %d", m.Total, m.Delivered, m.Dropped)
	}
	return nil
}

type result struct {
	sent, accepted, rejected, noRetryAfter int64
	elapsed                                time.Duration
	ok, busy                               []time.Duration
}

// load sends seed-format packets over conns keep-alive connections, at rate
// packets/s in total (0 = flat out), for d, and records latency by outcome.
func load(client *http.Client, base string, conns int, rate float64, d time.Duration, prefix string) result {
	var (
		res  result
		mu   sync.Mutex
		seq  atomic.Int64
		wg   sync.WaitGroup
		t0   = time.Now()
		stop = t0.Add(d)
	)
	interval := time.Duration(0)
	if rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(conns) / rate)
	}
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			var ok, busy []time.Duration
			var sent, acc, rej, noRA int64
			next := t0.Add(time.Duration(c) * interval / time.Duration(conns))
			for time.Now().Before(stop) {
				if interval > 0 {
					if w := time.Until(next); w > 0 {
						time.Sleep(w) // pacing the offered load
					}
					next = next.Add(interval)
				}
				id := prefix + "-" + strconv.FormatInt(seq.Add(1), 10)
				start := time.Now()
				resp, err := client.Post(base+"/ingest", "application/json", bytes.NewReader(packet(id)))
				sent++
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				lat := time.Since(start)
				switch resp.StatusCode {
				case 202:
					acc++
					ok = append(ok, lat)
				case 503:
					rej++
					busy = append(busy, lat)
					if resp.Header.Get("Retry-After") == "" {
						noRA++
					}
				}
			}
			mu.Lock()
			res.sent += sent
			res.accepted += acc
			res.rejected += rej
			res.noRetryAfter += noRA
			res.ok = append(res.ok, ok...)
			res.busy = append(res.busy, busy...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	res.elapsed = time.Since(t0)
	return res
}

func pct(xs []time.Duration, q float64) string {
	if len(xs) == 0 {
		return "-"
	}
	slices.Sort(xs)
	v := xs[min(int(q*float64(len(xs))), len(xs)-1)]
	return strconv.FormatFloat(float64(v.Microseconds())/1000, 'f', 2, 64) + " ms"
}

// packet is the seed's packet: five messages, about 1.1 KB.
func packet(id string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"emitter_id":"soak","packet_id":"` + id + `","messages":[`)
	for i := 0; i < 5; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"timestamp":1640995200000,"level":"INFO","message":"GET /api/v1/orders/48213 completed in 23ms with status 200 for user 7781 from 10.0.3.17","metadata":{"service":"orders","host":"web-3","region":"eu-west-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}}`)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func hwm(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func waitHealthy(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not healthy after %v (err %v)", url, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
