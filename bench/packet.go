// Package bench is the harness behind `make bench`: it starts the distributor and
// the peers it is compared with on loopback, drives each with the same load
// generators in alternating rounds, samples the servers' CPU and memory from /proc,
// and writes the table, the ratios, the results file and the chart (bench/out/, or
// docs/ with BENCH_RECORD=1).
package bench

import (
	"strconv"
	"strings"
)

// MessagesPerPacket is how many log messages every benchmark packet carries.
const MessagesPerPacket = 5

// Packet is the body every driver sends: a packet in the seed's format, five
// messages and about 1.1 KB, the size the seed distributor was measured with. Only
// packet_id changes from request to request: Head + id + Tail. Analyzers
// de-duplicate by packet_id, so a repeated id would be acknowledged but not
// counted, and delivered counts would lie.
type Packet struct {
	Head string // up to and including the opening quote of packet_id's value
	Tail string // from the closing quote of packet_id's value to the end
}

// benchMessages are the texts of the five messages: what a web service logs.
var benchMessages = [MessagesPerPacket]struct{ level, text, service, host string }{
	{"INFO", "GET /api/v1/orders/83421 completed status=200 latency_ms=12 user=u-5521 cache=hit region=eu-west-1", "checkout", "host-07"},
	{"INFO", "POST /api/v1/payments authorized amount=129.90 currency=EUR user=u-5521 gateway=adyen latency_ms=87", "payments", "host-03"},
	{"WARN", "upstream inventory slow: GET /stock/sku-118273 took 412 ms (threshold 250 ms), retrying shard=3", "inventory", "host-11"},
	{"DEBUG", "cache refresh for catalog segment=shoes items=1824 evicted=57 loaded=61 took_ms=33 worker=catalog-4", "catalog", "host-05"},
	{"ERROR", "POST /api/v1/shipments failed status=503 order=o-83421 error=\"connection reset by peer\" retry=true", "shipping", "host-14"},
}

// NewPacket builds the benchmark packet of emitter emitterID (a plain name without
// quotes or backslashes), its messages stamped with tsMillis.
func NewPacket(emitterID string, tsMillis int64) Packet {
	var b strings.Builder
	b.WriteString(`{"emitter_id":"`)
	b.WriteString(emitterID)
	b.WriteString(`","packet_id":"`)
	head := b.String()
	b.Reset()
	b.WriteString(`","messages":[`)
	for i, m := range benchMessages {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"timestamp":`)
		b.WriteString(strconv.FormatInt(tsMillis+int64(i)*7, 10))
		b.WriteString(`,"level":"`)
		b.WriteString(m.level)
		b.WriteString(`","message":"`)
		b.WriteString(strings.ReplaceAll(m.text, `"`, `\"`))
		b.WriteString(`","metadata":{"service":"`)
		b.WriteString(m.service)
		b.WriteString(`","host":"`)
		b.WriteString(m.host)
		b.WriteString(`"}}`)
	}
	b.WriteString(`]}`)
	return Packet{Head: head, Tail: b.String()}
}

// Append appends the body of the packet with id to dst. id must be a plain token
// (letters, digits, '-'), as every id the harness makes is.
func (p Packet) Append(dst []byte, id string) []byte {
	dst = append(dst, p.Head...)
	dst = append(dst, id...)
	return append(dst, p.Tail...)
}

// Size is the body length for an id of idLen bytes.
func (p Packet) Size(idLen int) int { return len(p.Head) + idLen + len(p.Tail) }
