package proxy

// DNS discovery (ANALYZERS_DNS=name:port): every A and AAAA address of the name is
// an analyzer, http://ip:port, named dns-<ip>-<port>, weighted ANALYZERS_DNS_WEIGHT.
// The name is resolved again every DNS_REFRESH_SEC on a goroutine of its own (never
// on an event loop): addresses that appear are added and addresses that went away
// are removed, through Server.AddAnalyzer and Server.RemoveAnalyzer, exactly as the
// admin API does. A failed resolution changes nothing: it is logged (rate-limited)
// and counted.

import (
	"cmp"
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

func init() {
	help["distributor_dns_refresh_total"] = "Resolutions of ANALYZERS_DNS, by result: success (the analyzers follow the answer) or failure (the analyzers were kept as they were)."
}

// dnsTimeout bounds one resolution.
const dnsTimeout = 5 * time.Second

// discovery keeps the analyzers of ANALYZERS_DNS in step with the name's addresses.
// Everything in it but the counters belongs to its goroutine (refresh is called by
// Start before that goroutine exists, then only by run).
type discovery struct {
	srv    *Server
	server string // DNS_SERVER, or "system" (resolv.conf), for the log
	host   string
	port   string
	weight float64
	every  time.Duration
	res    *net.Resolver
	owned  map[string]string // address (ip:port) -> name of the analyzers this discovery added
	ok     *metrics.Counter
	fail   *metrics.Counter
	errLog rateLog
}

func newDiscovery(srv *Server) *discovery {
	host, port, _ := net.SplitHostPort(srv.cfg.AnalyzersDNS) // checked by the setting
	return &discovery{
		srv: srv, server: cmp.Or(srv.cfg.DNSServer, "system"), host: host, port: port, weight: srv.cfg.DNSWeight, every: srv.cfg.DNSRefresh,
		res:   newResolver(srv.cfg.DNSServer),
		owned: map[string]string{},
		ok:    srv.prom.set.GetOrCreateCounter(`distributor_dns_refresh_total{result="success"}`),
		fail:  srv.prom.set.GetOrCreateCounter(`distributor_dns_refresh_total{result="failure"}`),
	}
}

// newResolver is Go's own resolver; with server set (DNS_SERVER) it asks that
// server instead of the ones in /etc/resolv.conf. The code path is the same either
// way.
func newResolver(server string) *net.Resolver {
	r := &net.Resolver{PreferGo: true}
	if server != "" {
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		}
	}
	return r
}

// run resolves the name every DNS_REFRESH_SEC until ctx ends.
func (d *discovery) run(ctx context.Context) {
	t := time.NewTicker(d.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = d.refresh(ctx, false)
		}
	}
}

// refresh resolves the name once and makes the discovered analyzers follow the
// answer: removals first, then additions (atStart: before Start's first probe
// round, so they start like configured ones). On a failure nothing changes.
func (d *discovery) refresh(ctx context.Context, atStart bool) error {
	rctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	ips, err := d.res.LookupIPAddr(rctx, d.host)
	cancel()
	if err == nil && len(ips) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		d.fail.Inc()
		if ok, held := d.errLog.allow(); ok {
			d.srv.log.Warn("ANALYZERS_DNS: resolution failed; keeping the current analyzers", "name", d.host, "server", d.server,
				"analyzers", len(d.owned), "err", err, "suppressed", held)
		}
		return err
	}
	d.ok.Inc()
	want := map[string]AnalyzerSpec{}
	for _, ip := range ips {
		h := ip.IP.String()
		if ip.Zone != "" {
			h += "%" + ip.Zone
		}
		addr := net.JoinHostPort(h, d.port)
		spec := AnalyzerSpec{URL: "http://" + addr, Addr: addr, Host: addr, Weight: d.weight}
		spec.Name = defaultName(spec, "dns")
		want[addr] = spec
	}
	by := "dns " + d.host
	for _, addr := range slices.Sorted(maps.Keys(d.owned)) {
		if _, ok := want[addr]; ok {
			continue
		}
		if _, err := d.srv.RemoveAnalyzer(d.owned[addr], by); err != nil {
			d.srv.log.Info("ANALYZERS_DNS: address gone, its analyzer was removed already", "analyzer", d.owned[addr])
		}
		delete(d.owned, addr)
	}
	for _, addr := range slices.Sorted(maps.Keys(want)) {
		spec := want[addr]
		if name, ok := d.owned[addr]; ok && d.srv.ctl.lookup(name) >= 0 {
			continue // still there
		}
		_, err := d.srv.ctl.add(spec, by, atStart)
		switch {
		case errors.Is(err, errMemberExists):
			// Configured in ANALYZERS too (or added through the admin API): that one
			// stays as it is, and this discovery does not own it.
			delete(d.owned, addr)
		case err != nil:
			if ok, held := d.errLog.allow(); ok {
				d.srv.log.Error("ANALYZERS_DNS: cannot add an analyzer", "analyzer", spec.Name, "err", err, "suppressed", held)
			}
		default:
			d.owned[addr] = spec.Name
		}
	}
	return nil
}
