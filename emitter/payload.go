package emitter

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
)

// The seed's packet shape:
//
//	{"emitter_id":"...","packet_id":"...","messages":[{"timestamp":<unix ms>,
//	 "level":"INFO","message":"...","metadata":{"service":"...","host":"..."}}]}
//
// Bodies are appended into buffers the caller reuses; building one allocates nothing.

var (
	// levels is weighted by repetition: mostly INFO, some DEBUG and WARN, few ERROR.
	levels   = [20]string{"INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "WARN", "WARN", "ERROR"}
	services = [8]string{"checkout", "payments", "auth", "catalog", "search", "inventory", "shipping", "frontend"}
	hosts    = [16]string{"host-01", "host-02", "host-03", "host-04", "host-05", "host-06", "host-07", "host-08", "host-09", "host-10", "host-11", "host-12", "host-13", "host-14", "host-15", "host-16"}
	words    = [...]string{"request", "completed", "user", "session", "cache", "miss", "hit", "latency", "order", "item", "query", "timeout", "retry", "connection", "opened", "closed", "upstream", "token", "refreshed", "payment", "authorized", "declined", "stock", "updated", "GET", "PUT", "DELETE", "/api/v1/orders", "/api/v1/users", "/healthz", "status=200", "status=404", "status=500", "region=eu-west-1", "shard=3", "worker", "started", "finished", "batch", "flushed"}
)

// textPool is read-only filler for message texts: printable ASCII without '"' or
// '\\', so any slice of it is a valid JSON string body. Each message copies a window
// of it at a random offset.
type textPool []byte

func newTextPool(messageBytes int, rng *rand.Rand) textPool {
	size := 64 << 10
	if size < 4*messageBytes {
		size = 4 * messageBytes
	}
	p := make([]byte, 0, size+32)
	for len(p) < size {
		if rng.IntN(4) == 0 {
			p = append(p, "id="...)
			p = strconv.AppendUint(p, rng.Uint64N(1e9), 10)
		} else {
			p = append(p, words[rng.IntN(len(words))]...)
		}
		p = append(p, ' ')
	}
	return p
}

// generator builds packet bodies for one goroutine.
type generator struct {
	head      []byte // `{"emitter_id":"<id>","packet_id":"<id>-<run>-`
	idPrefix  string // packet id before the sequence number, unescaped (for OnAccepted)
	pool      textPool
	textBytes int
	counts    counter
	rng       *rand.Rand
}

// newPacketPrefix is the part of every packet id shared by one run: the emitter id
// and the run's start time in base 36, so ids stay unique across runs and emitters.
func newPacketPrefix(emitterID string, startUnixNano int64) string {
	return emitterID + "-" + strconv.FormatInt(startUnixNano, 36) + "-"
}

func newGenerator(idPrefix, emitterID string, pool textPool, textBytes int, d distribution, rng *rand.Rand) *generator {
	head := append([]byte(nil), `{"emitter_id":`...)
	head = appendJSONString(head, emitterID)
	head = append(head, `,"packet_id":`...)
	pid := appendJSONString(nil, idPrefix)
	head = append(head, pid[:len(pid)-1]...) // keep the string open for the sequence number
	return &generator{
		head:      head,
		idPrefix:  idPrefix,
		pool:      pool,
		textBytes: textBytes,
		counts:    newCounter(d, rng),
		rng:       rng,
	}
}

// appendJSONString quotes s as JSON. Only used at setup: the emitter id is the one
// string from outside that ends up in bodies.
func appendJSONString(dst []byte, s string) []byte {
	b, err := json.Marshal(s)
	if err != nil { // cannot happen for a string
		panic(err)
	}
	return append(dst, b...)
}

// appendPacket appends the body of packet seq, carrying n messages stamped nowMs.
func (g *generator) appendPacket(dst []byte, seq uint64, n int, nowMs int64) []byte {
	dst = append(dst, g.head...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `","messages":[`...)
	for i := 0; i < n; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		r := g.rng.Uint64()
		dst = append(dst, `{"timestamp":`...)
		dst = strconv.AppendInt(dst, nowMs, 10)
		dst = append(dst, `,"level":"`...)
		dst = append(dst, levels[r%uint64(len(levels))]...)
		dst = append(dst, `","message":"`...)
		off := int((r >> 16) % uint64(len(g.pool)-g.textBytes))
		dst = append(dst, g.pool[off:off+g.textBytes]...)
		dst = append(dst, `","metadata":{"service":"`...)
		dst = append(dst, services[(r>>8)%uint64(len(services))]...)
		dst = append(dst, `","host":"`...)
		dst = append(dst, hosts[(r>>12)%uint64(len(hosts))]...)
		dst = append(dst, `"}}`...)
	}
	dst = append(dst, "]}"...)
	return dst
}

// packetID is the unescaped id of packet seq, for OnAccepted (tests only; allocates).
func (g *generator) packetID(seq uint64) string {
	return g.idPrefix + strconv.FormatUint(seq, 10)
}
