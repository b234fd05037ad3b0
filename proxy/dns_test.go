package proxy

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sluicelog/sluice/sched"
)

// fakeDNS is a real DNS server on 127.0.0.1 (UDP, a port the kernel picks) whose A
// records for one name the test changes; AAAA has none. fail makes it answer
// SERVFAIL.
type fakeDNS struct {
	addr string
	mu   sync.Mutex
	ips  []string
	fail bool
}

func newFakeDNS(t *testing.T, name string, ips ...string) *fakeDNS {
	t.Helper()
	f := &fakeDNS{ips: ips}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = pc.LocalAddr().String()
	fqdn := dns.Fqdn(name)
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(q)
			f.mu.Lock()
			defer f.mu.Unlock()
			switch {
			case f.fail:
				m.Rcode = dns.RcodeServerFailure
			case len(q.Question) != 1 || !strings.EqualFold(q.Question[0].Name, fqdn):
				m.Rcode = dns.RcodeNameError
			case q.Question[0].Qtype == dns.TypeA:
				for _, ip := range f.ips {
					m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: fqdn, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.ParseIP(ip)})
				}
			}
			_ = w.WriteMsg(m)
		})}
	go func() { _ = srv.ActivateAndServe() }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("DNS server did not start")
	}
	t.Cleanup(func() { _ = srv.Shutdown() })
	return f
}

func (f *fakeDNS) set(fail bool, ips ...string) {
	f.mu.Lock()
	f.ips, f.fail = ips, fail
	f.mu.Unlock()
}

// fakeAnalyzersOn starts one fake analyzer on each loopback IP, all on one port
// (DNS gives addresses, ANALYZERS_DNS the port).
func fakeAnalyzersOn(t *testing.T, ips ...string) (port string, fakes []*fakeAnalyzer) {
	t.Helper()
	for try := 0; try < 20; try++ {
		ln, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Skipf("no %s loopback address: %v", ips[0], err)
		}
		_, port, _ = net.SplitHostPort(ln.Addr().String())
		_ = ln.Close()
		fakes = fakes[:0]
		ok := true
		for _, ip := range ips {
			if l, err := net.Listen("tcp", net.JoinHostPort(ip, port)); err != nil {
				ok = false
				break
			} else {
				_ = l.Close()
			}
		}
		if !ok {
			continue // the port is taken on another address: pick another
		}
		for _, ip := range ips {
			f := newFakeAnalyzer(t, false)
			f.stop()
			f.addr = net.JoinHostPort(ip, port)
			f.start(t)
			fakes = append(fakes, f)
		}
		return port, fakes
	}
	t.Fatal("no port free on every loopback address")
	return "", nil
}

// ANALYZERS_DNS beside ANALYZERS: the addresses found at start are analyzers at once
// (full weight, like configured ones); an address that appears gets traffic; one
// that goes away gets nothing once its removal is through; a failing resolution
// changes nothing and is counted; nothing accepted is lost (by packet_id).
func TestDNSDiscovery(t *testing.T) {
	port, fakes := fakeAnalyzersOn(t, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	static := newFakeAnalyzer(t, false)
	const name = "analyzers.sluice.test"
	ns := newFakeDNS(t, name, "127.0.0.2", "127.0.0.3")
	srv := startDistributor(t, static.url()+"=1", func(c *Config) {
		c.AnalyzersDNS = name + ":" + port
		c.DNSServer = ns.addr
		c.DNSRefresh = 100 * time.Millisecond
		c.DNSWeight = 1
		c.SlowStart = time.Hour // a run-time add stays in slow start: visible below
	})
	dnsName := func(ip string) string { return "dns-" + ip + "-" + port }
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		id := idOf(srv, dnsName(ip))
		if id < 0 || stateOf(srv, id) != sched.StateHealthy {
			t.Fatalf("%s after Start: id %d, view %+v; want found by the first resolution and healthy like a configured one", dnsName(ip), id, srv.View().Members)
		}
	}
	if idOf(srv, dnsName("127.0.0.4")) >= 0 {
		t.Fatal("an address DNS did not give is an analyzer")
	}
	l := startLoad(t, srv, 4, "dns-", fixedSize(2))
	waitFor(t, "traffic to the discovered analyzers", 5*time.Second, func() bool {
		return received(static) > 0 && received(fakes[0]) > 0 && received(fakes[1]) > 0
	})

	// Appear.
	ns.set(false, "127.0.0.2", "127.0.0.3", "127.0.0.4")
	waitFor(t, "traffic to the address that appeared", 5*time.Second, func() bool { return received(fakes[2]) > 10 })
	if s := stateOf(srv, idOf(srv, dnsName("127.0.0.4"))); s != sched.StateSlowStart {
		t.Errorf("an analyzer that appeared at run time is %s, want slow_start", s)
	}

	// Disappear.
	gone := idOf(srv, dnsName("127.0.0.3"))
	ns.set(false, "127.0.0.2", "127.0.0.4")
	waitFor(t, "the removal of the address that went away", 5*time.Second, func() bool {
		if stateOf(srv, gone) != sched.StateRemoved {
			return false
		}
		d := srv.Snapshot().Dests[gone]
		return d.Queued+d.InFlight == 0
	})
	got, at := received(fakes[1]), time.Now().UnixNano()
	before := received(fakes[0])
	waitFor(t, "more traffic to the others", 5*time.Second, func() bool { return received(fakes[0]) > before+20 })
	if n := received(fakes[1]); n != got || fakes[1].lastAt.Load() > at {
		t.Fatalf("the analyzer whose address went away received %d packets after its removal", n-got)
	}

	// A failing resolution keeps the set.
	ns.set(true)
	failures := func() float64 {
		return seriesValue(scrape(t, "http://"+srv.MetricsAddr()), `distributor_dns_refresh_total{result="failure"}`)
	}
	if n := failures(); n != 0 {
		t.Fatalf("%v failed resolutions before the DNS server failed", n)
	}
	waitFor(t, "a failed resolution counted", 5*time.Second, func() bool { return failures() >= 2 })
	if idOf(srv, dnsName("127.0.0.2")) < 0 || idOf(srv, dnsName("127.0.0.4")) < 0 || srv.View().Live() != 3 {
		t.Fatalf("after a failed resolution the analyzers are %+v, want the static one and two discovered", srv.View().Members)
	}

	accepted := l.finish()
	settledNothingLost(t, srv, 10*time.Second)
	checkDelivered(t, accepted, append([]*fakeAnalyzer{static}, fakes...), false)
	expo := scrape(t, "http://"+srv.MetricsAddr())
	if seriesValue(expo, `distributor_dns_refresh_total{result="success"}`) < 3 || strings.Contains(expo, `analyzer="`+dnsName("127.0.0.3")+`"`) {
		t.Errorf("metrics: want a success count and no series of the removed analyzer")
	}
}

// seriesValue is the value of one series in an exposition, -1 when it is absent.
func seriesValue(expo, series string) float64 {
	for _, line := range strings.Split(expo, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// ANALYZERS_DNS alone: a distributor with no configured analyzer starts while DNS
// fails (503 to emitters, not ready) and takes traffic once the name resolves.
func TestDNSOnlyStartsEmpty(t *testing.T) {
	port, fakes := fakeAnalyzersOn(t, "127.0.0.2")
	const name = "only.sluice.test"
	ns := newFakeDNS(t, name)
	ns.set(true)
	srv := startDistributor(t, "", func(c *Config) {
		c.AnalyzersDNS, c.DNSServer, c.DNSRefresh = name+":"+port, ns.addr, 100*time.Millisecond
	})
	s := newSender(ingestURL(srv), 1)
	if code, _ := s.send(t, "early", 1); code != 503 || srv.Ready() == "" {
		t.Fatalf("no analyzer yet: %d, ready %q; want 503 and not ready", code, srv.Ready())
	}
	ns.set(false, "127.0.0.2")
	waitFor(t, "the discovered analyzer eligible", 5*time.Second, func() bool { return srv.Ready() == "" })
	for i := range 20 {
		if code, _ := s.send(t, "p-"+strconv.Itoa(i), 1); code != 202 {
			t.Fatalf("packet %d: %d", i, code)
		}
	}
	settledNothingLost(t, srv, 5*time.Second)
	checkDelivered(t, s.accepted, fakes, false)
}
