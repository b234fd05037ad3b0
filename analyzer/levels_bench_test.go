package analyzer

import "testing"

// levelsBenchBody is a typical five-message packet.
var levelsBenchBody = []byte(`{"emitter_id":"bench","packet_id":"0000000000000001","messages":[` +
	`{"timestamp":1640995200000,"level":"INFO","message":"user 4711 logged in from 10.0.0.1","metadata":{"service":"auth","region":"eu-west-1"}},` +
	`{"timestamp":1640995200000,"level":"INFO","message":"user 4711 logged in from 10.0.0.1","metadata":{"service":"auth","region":"eu-west-1"}},` +
	`{"timestamp":1640995200000,"level":"WARN","message":"user 4711 logged in from 10.0.0.1","metadata":{"service":"auth","region":"eu-west-1"}},` +
	`{"timestamp":1640995200000,"level":"ERROR","message":"user 4711 logged in from 10.0.0.1","metadata":{"service":"auth","region":"eu-west-1"}},` +
	`{"timestamp":1640995200000,"level":"DEBUG","message":"user 4711 logged in from 10.0.0.1","metadata":{"service":"auth","region":"eu-west-1"}}]}`)

func BenchmarkCountLevels(b *testing.B) {
	b.SetBytes(int64(len(levelsBenchBody)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var lc levelCounts
		countLevels(levelsBenchBody, &lc)
		if lc[levelInfo] != 2 {
			b.Fatal(lc)
		}
	}
}
