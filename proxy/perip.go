package proxy

import (
	"net"
	"net/netip"
	"sync"
)

// ipConns counts open inbound connections per client address, for
// MAX_CONNS_PER_IP. The limit is the whole distributor's, so the table is shared by
// every loop: it is split into ipShards maps, each under its own mutex, held only
// for one map lookup and update as a connection opens or closes (never on the
// request path). Loops contend only when two accept or close connections from
// addresses in the same shard at the same instant, and then wait for one map
// operation, so OnOpen never waits on a lock held for long.
type ipConns struct {
	shards [ipShards]ipShard
}

const ipShards = 64

type ipShard struct {
	mu sync.Mutex
	n  map[netip.Addr]int32
	_  [40]byte // keep neighbouring shards' mutexes off one cache line
}

func newIPConns() *ipConns {
	t := &ipConns{}
	for i := range t.shards {
		t.shards[i].n = map[netip.Addr]int32{}
	}
	return t
}

func (t *ipConns) shard(a netip.Addr) *ipShard {
	b := a.As16()
	h := uint32(2166136261)
	for _, x := range b {
		h = (h ^ uint32(x)) * 16777619
	}
	return &t.shards[h%ipShards]
}

// open counts a connection from a and reports whether it is within limit (0: no
// limit). A connection over the limit is not counted.
func (t *ipConns) open(a netip.Addr, limit int64) bool {
	sh := t.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	n := sh.n[a]
	if limit > 0 && int64(n) >= limit {
		return false
	}
	sh.n[a] = n + 1
	return true
}

// close uncounts a connection open counted.
func (t *ipConns) close(a netip.Addr) {
	sh := t.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if n := sh.n[a]; n > 1 {
		sh.n[a] = n - 1
	} else {
		delete(sh.n, a)
	}
}

// count is the open connections from a.
func (t *ipConns) count(a netip.Addr) int {
	sh := t.shard(a)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return int(sh.n[a])
}

// remoteIP is the client address of c, IPv4-mapped IPv6 addresses as IPv4; the
// zero Addr when c has none (it is then not limited).
func remoteIP(addr net.Addr) netip.Addr {
	if ta, ok := addr.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}
