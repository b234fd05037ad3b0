package analyzer
import ("testing";"github.com/sluicelog/sluice/codec")
var tmpBody = []byte(`{"emitter_id":"bench","packet_id":"0000000000000001","messages":[{"timestamp":1640995200000,"level":"INFO","message":"user 4711 logged in from 10.0.0.1","metadata":{"service":"auth","region":"eu-west-1"}},{"timestamp":1640995200000,"level":"INFO","message":"user 4711 logged in from 10.0.0.1","metadata":{"service":"auth","region":"eu-west-1"}},{"timestamp":1640995200000,"level":"WARN","message":"user 4711 logged in from 10.0.0.1","metadata":{"service":"auth","region":"eu-west-1"}},{"timestamp":1640995200000,"level":"ERROR","message":"user 4711 logged in from 10.0.0.1","metadata":{"service":"auth","region":"eu-west-1"}},{"timestamp":1640995200000,"level":"DEBUG","message":"user 4711 logged in from 10.0.0.1","metadata":{"service":"auth","region":"eu-west-1"}}]}`)
func BenchmarkTmpLevels(b *testing.B) { for i := 0; i < b.N; i++ { var lc levelCounts; countLevels(tmpBody, &lc) } }
func BenchmarkTmpValidate(b *testing.B) { for i := 0; i < b.N; i++ { var p codec.Packet; codec.ValidatePacket(tmpBody, &p) } }
func BenchmarkTmpDedup(b *testing.B) { w := newDedupWindow(0); for i := 0; i < b.N; i++ { w.seen(uint64(i)*0x9E3779B97F4A7C15) } }
func BenchmarkTmpDedupSmall(b *testing.B) { w := newDedupWindow(4096); for i := 0; i < b.N; i++ { w.seen(uint64(i)*0x9E3779B97F4A7C15) } }
func BenchmarkTmpHash(b *testing.B) { w := newDedupWindow(4096); for i := 0; i < b.N; i++ { w.hash(tmpBody[30:46]) } }
