package analyzer

import (
	"bufio"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func simulate(t *testing.T, c *client, action string) FaultStatus {
	t.Helper()
	r := c.do("POST", "/internal/simulate/"+action, "")
	if r.status != 200 {
		t.Fatalf("simulate %s: %d %s", action, r.status, r.body)
	}
	var out struct {
		Status string
		Fault  FaultStatus
	}
	decode(t, r.body, &out)
	return out.Fault
}

func TestFaultFailAnswers500AndCountsNothing(t *testing.T) {
	a := startAnalyzer(t, Config{Batch: true})
	c := dial(t, a.Addr())
	if f := simulate(t, c, "fail"); !f.Fail {
		t.Fatalf("fault %+v", f)
	}
	if r := c.do("POST", "/ingest", packet("f-1", "INFO")); r.status != 500 {
		t.Fatalf("ingest while failing: %d %s", r.status, r.body)
	}
	if r := c.do("POST", "/ingest/batch", "["+packet("f-2", "INFO")+"]"); r.status != 500 {
		t.Fatalf("batch while failing: %d", r.status)
	}
	if r := c.do("GET", "/health", ""); r.status != 200 {
		t.Fatalf("health is not part of fail: %d", r.status)
	}
	st := a.Stats()
	if st.Packets != 0 || st.Failed != 2 || !st.Fault.Fail {
		t.Fatalf("stats %+v", st)
	}
	if f := simulate(t, c, "begin"); f != (FaultStatus{}) {
		t.Fatalf("begin left %+v", f)
	}
	// A packet refused with 500 was not remembered: its retry is new.
	if r := c.do("POST", "/ingest", packet("f-1", "INFO")); r.status != 200 {
		t.Fatalf("after begin: %d", r.status)
	}
	if st := a.Stats(); st.Packets != 1 || st.Duplicates != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFaultHealth(t *testing.T) {
	a := startAnalyzer(t, Config{Batch: true})
	c := dial(t, a.Addr())
	simulate(t, c, "health-fail")
	r := c.do("GET", "/health", "")
	if r.status != 503 || !strings.Contains(r.body, `"unhealthy"`) {
		t.Fatalf("health while failing: %d %s", r.status, r.body)
	}
	if r := c.do("POST", "/ingest", packet("h-1", "INFO")); r.status != 200 {
		t.Fatalf("ingest is not part of health-fail: %d", r.status)
	}
	simulate(t, c, "health-ok")
	if r := c.do("GET", "/health", ""); r.status != 200 {
		t.Fatalf("after health-ok: %d", r.status)
	}
	if st := a.Stats(); st.HealthFailed != 1 {
		t.Fatalf("health_failed %d", st.HealthFailed)
	}
}

func TestFaultSlowDelaysIngestAnswers(t *testing.T) {
	a := startAnalyzer(t, Config{})
	c := dial(t, a.Addr())
	const slow = 80 * time.Millisecond
	if f := simulate(t, c, "slow?ms=80"); f.SlowMS != 80 {
		t.Fatalf("fault %+v", f)
	}
	start := time.Now()
	r := c.do("POST", "/ingest", packet("slow-1", "INFO"))
	if took := time.Since(start); took < slow {
		t.Fatalf("answer after %v, want at least %v", took, slow)
	}
	if r.status != 200 {
		t.Fatal(r.status)
	}
	// Health is not delayed.
	start = time.Now()
	c.do("GET", "/health", "")
	if took := time.Since(start); took >= slow {
		t.Fatalf("health took %v", took)
	}
	simulate(t, c, "slow?ms=0")
	start = time.Now()
	c.do("POST", "/ingest", packet("slow-2", "INFO"))
	if took := time.Since(start); took >= slow {
		t.Fatalf("ingest after slow?ms=0 took %v", took)
	}
	// The latency histogram saw both answers, the slow one included.
	m := c.do("GET", "/metrics", "").body
	if n := sumSeries(t, m, "analyzer_ingest_duration_seconds_count"); n != 2 {
		t.Fatalf("histogram count %v, want 2:\n%s", n, m)
	}
	if s := sumSeries(t, m, "analyzer_ingest_duration_seconds_sum"); s < slow.Seconds() {
		t.Fatalf("histogram sum %vs, want at least %v", s, slow)
	}
}

// sumSeries adds the values of every series of a metric in Prometheus text.
func sumSeries(t *testing.T, text, name string) float64 {
	t.Helper()
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

func TestProcessingDelayKeepsPipelinedOrder(t *testing.T) {
	const delay = 40 * time.Millisecond
	a := startAnalyzer(t, Config{Delay: delay})
	c := dial(t, a.Addr())

	// health (not delayed), ingest (delayed), health (must wait behind it), ingest.
	raw := request("GET", "/health", "") +
		request("POST", "/ingest", packet("d-1", "INFO")) +
		request("GET", "/health", "") +
		request("POST", "/ingest", packet("d-2", "INFO"))
	start := time.Now()
	c.send(raw)
	if r := c.read(); r.status != 200 || !strings.Contains(r.body, "healthy") {
		t.Fatalf("first: %d %s", r.status, r.body)
	}
	if took := time.Since(start); took >= delay {
		t.Fatalf("undelayed health answer took %v", took)
	}
	want := []string{`"packet_id":"d-1"`, `"healthy"`, `"packet_id":"d-2"`}
	for i, w := range want {
		r := c.read()
		if !strings.Contains(r.body, w) {
			t.Fatalf("answer %d: %s, want %s", i+1, r.body, w)
		}
		if took := time.Since(start); took < delay {
			t.Fatalf("answer %d after %v, want at least %v", i+1, took, delay)
		}
	}

	// Requests sent one by one while earlier ones are still held back keep their
	// order too, even though a later batch could be due no later than an earlier one.
	for i := 0; i < 20; i++ {
		c.send(request("POST", "/ingest", packet(fmt.Sprintf("seq-%d", i), "INFO")))
	}
	for i := 0; i < 20; i++ {
		if r := c.read(); !strings.Contains(r.body, fmt.Sprintf(`"seq-%d"`, i)) {
			t.Fatalf("answer %d: %s", i, r.body)
		}
	}

	// A request that arrives in pieces while an answer is held back.
	next := request("POST", "/ingest", packet("piece", "INFO"))
	c.send(request("POST", "/ingest", packet("whole", "INFO")) + next[:40])
	c.send(next[40:])
	for _, id := range []string{"whole", "piece"} {
		if r := c.read(); !strings.Contains(r.body, `"`+id+`"`) {
			t.Fatalf("want %s, got %s", id, r.body)
		}
	}
}

func TestDelayedAnswerThenConnectionClose(t *testing.T) {
	a := startAnalyzer(t, Config{Delay: 20 * time.Millisecond})
	c := dial(t, a.Addr())
	body := packet("dc", "INFO")
	c.send(fmt.Sprintf("POST /ingest HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	if r := c.read(); r.status != 200 || !r.close {
		t.Fatalf("%d close=%v", r.status, r.close)
	}
	if !c.closedByPeer(2 * time.Second) {
		t.Fatal("connection open after delayed Connection: close answer")
	}
}

func TestFaultDownClosesAndRefusesConnections(t *testing.T) {
	a := startAnalyzer(t, Config{})
	idle := dial(t, a.Addr()) // a keep-alive connection that says nothing
	if r := idle.do("GET", "/health", ""); r.status != 200 {
		t.Fatal(r.status)
	}
	c := dial(t, a.Addr())
	const down = 300 * time.Millisecond
	start := time.Now()
	if f := simulate(t, c, "down?ms=300"); !f.Down || f.DownRemainingMS <= 0 {
		t.Fatalf("fault %+v", f)
	}
	// The connection that asked got its answer and is then closed, like every other.
	if !c.closedByPeer(2*time.Second) || !idle.closedByPeer(2*time.Second) {
		t.Fatal("down left a connection open")
	}
	// While down, new connections are accepted by the kernel and closed at once.
	refused := 0
	for time.Since(start) < down/2 {
		if healthOK(a.Addr()) {
			if time.Since(start) < down {
				t.Fatalf("healthy %v into a %v down", time.Since(start), down)
			}
			break
		}
		refused++
	}
	if refused == 0 {
		t.Fatal("no connection was refused while down")
	}
	eventually(t, 5*time.Second, "analyzer back up", func() bool { return healthOK(a.Addr()) })
	if took := time.Since(start); took < down {
		t.Fatalf("up again after %v, want at least %v", took, down)
	}
	if st := a.Stats(); st.Refused < 2 || st.Fault.Down {
		t.Fatalf("stats %+v", st)
	}
}

// healthOK makes one GET /health on a new connection.
func healthOK(addr string) bool {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer nc.Close()
	c := &client{nc: nc, br: bufio.NewReader(nc)}
	if _, err := nc.Write([]byte(request("GET", "/health", ""))); err != nil {
		return false
	}
	r, err := c.readErr()
	return err == nil && r.status == 200
}

func TestFaultFlapTogglesUntilBegin(t *testing.T) {
	a := startAnalyzer(t, Config{})
	const period = 60 * time.Millisecond
	a.SetFault(Fault{Flap: period})
	if f := a.Fault(); f.Flap != period {
		t.Fatalf("fault %+v", f)
	}
	// Watch health for a few periods: it must go down, come up and go down again.
	var transitions int
	last := healthOK(a.Addr())
	if last {
		t.Fatal("a flap starts with its down half")
	}
	deadline := time.Now().Add(20 * period)
	for transitions < 3 && time.Now().Before(deadline) {
		if ok := healthOK(a.Addr()); ok != last {
			transitions++
			last = ok
		}
	}
	if transitions < 3 {
		t.Fatalf("saw %d up/down transitions in %v of flapping", transitions, 20*period)
	}
	// A keep-alive connection opened in an up half is closed at the next down half.
	eventually(t, 5*period, "an up half", func() bool { return healthOK(a.Addr()) })
	c := dial(t, a.Addr())
	if !c.closedByPeer(4 * period) {
		t.Fatal("flap did not close an idle connection")
	}

	a.SetFault(Fault{})
	for i := 0; i < 20; i++ {
		if !healthOK(a.Addr()) {
			t.Fatalf("down after the flap was cleared (probe %d)", i)
		}
	}
}

func TestSimulateChangesOnlyItsOwnFault(t *testing.T) {
	a := startAnalyzer(t, Config{})
	c := dial(t, a.Addr())
	simulate(t, c, "fail")
	simulate(t, c, "slow?ms=5")
	f := simulate(t, c, "health-fail")
	if !f.Fail || f.SlowMS != 5 || !f.HealthFail {
		t.Fatalf("fault %+v", f)
	}
	if f := simulate(t, c, "health-ok"); !f.Fail || f.SlowMS != 5 || f.HealthFail {
		t.Fatalf("fault %+v", f)
	}
	if f := a.Stats().Fault; !f.Fail || f.SlowMS != 5 {
		t.Fatalf("stats fault %+v", f)
	}
	// Stop clears faults: a revived analyzer is healthy.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if f := a.Fault(); f != (Fault{}) {
		t.Fatalf("fault after restart %+v", f)
	}
}

// A non-ingest answer held back only to keep order leaves with the delayed answer
// before it, not a whole delay later.
func TestHeldAnswerLeavesWithThePrecedingOne(t *testing.T) {
	const delay = 300 * time.Millisecond
	a := startAnalyzer(t, Config{Delay: delay})
	c := dial(t, a.Addr())
	start := time.Now()
	c.send(request("POST", "/ingest", packet("h-1", "INFO")))
	// The health request arrives late in the ingest's delay, in an event of its own:
	// it is not itself delayed, only ordered behind the held ingest answer.
	time.Sleep(delay * 5 / 6) // the scenario's timing, not synchronisation
	c.send(request("GET", "/health", ""))
	if r := c.read(); !strings.Contains(r.body, `"h-1"`) {
		t.Fatalf("first answer %s", r.body)
	}
	if r := c.read(); !strings.Contains(r.body, "healthy") {
		t.Fatalf("second answer %s", r.body)
	}
	// Held for a delay of its own it would leave at about 550 ms; leaving with the
	// ingest answer, at about 300 ms.
	if took := time.Since(start); took >= delay+delay/2 {
		t.Fatalf("health answer after %v: it was held a delay of its own", took)
	}
}
