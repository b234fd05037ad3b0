package analyzer

import (
	"bytes"
	"strings"
	"testing"

	"github.com/panjf2000/gnet/v2"
)

// BenchmarkServeIngestBatch is BenchmarkServeIngest for POST /ingest/batch: the
// event-loop handler on a fake connection, without sockets, 4 pipelined batches of
// 20 five-message packets per OnTraffic (under load the distributor sends batches
// of 12-27 packets). One op is one packet, so ns/op compares with
// BenchmarkServeIngest's.
func BenchmarkServeIngestBatch(b *testing.B) {
	a := New(Config{ID: "bench", Batch: true})
	h := &handler{a: a, delayer: newDelayer(a)}
	defer h.delayer.shutdown()
	fc := &fakeConn{loop: &fakeLoop{}}
	h.OnOpen(fc)

	const perBatch, depth = 20, 4
	pkt := packet("0000000000000000", "INFO", "INFO", "WARN", "ERROR", "DEBUG")
	body := "[" + strings.Repeat(pkt+",", perBatch-1) + pkt + "]"
	req := []byte(request("POST", "/ingest/batch", body))
	in := bytes.Repeat(req, depth)
	var idAt []int // where each packet's 16-digit id ends in in
	for i := 0; ; {
		j := bytes.Index(in[i:], []byte(`"packet_id":"`))
		if j < 0 {
			break
		}
		i += j + len(`"packet_id":"`) + 16
		idAt = append(idAt, i-1)
	}
	if len(idAt) != perBatch*depth {
		b.Fatalf("%d ids", len(idAt))
	}
	var id uint64
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += perBatch * depth {
		for _, k := range idAt {
			id++
			for v := id; v > 0; k-- { // unique id, in place
				in[k] = byte('0' + v%10)
				v /= 10
			}
		}
		fc.in, fc.out = in, fc.out[:0]
		if h.OnTraffic(fc) != gnet.None || len(fc.in) != 0 {
			b.Fatalf("request not consumed: %q", fc.out)
		}
	}
	b.StopTimer()
	if st := a.Stats(); st.Packets < uint64(b.N) || st.Invalid != 0 || st.Duplicates != 0 {
		b.Fatalf("stats %+v", st)
	}
}
