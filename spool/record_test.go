package spool

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

func TestDecodeRecord(t *testing.T) {
	rec := appendRecord(nil, 7, []byte("hello"))
	body, idx, n, err := decodeRecord(rec)
	if err != nil || idx != 7 || n != len(rec) || string(body) != "hello" {
		t.Fatalf("decode: %q %d %d %v", body, idx, n, err)
	}
	for cut := 0; cut < len(rec); cut++ {
		if _, _, _, err := decodeRecord(rec[:cut]); err != errShort {
			t.Errorf("cut at %d: %v, want errShort", cut, err)
		}
	}
	huge := append([]byte(nil), rec...)
	binary.LittleEndian.PutUint32(huge[4:], MaxRecordBytes+1)
	if _, _, _, err := decodeRecord(huge); err != errLength {
		t.Errorf("length over the bound: %v, want errLength", err)
	}
	bad := append([]byte(nil), rec...)
	bad[len(bad)-1] ^= 1
	if _, _, _, err := decodeRecord(bad); err != errChecksum {
		t.Errorf("flipped body bit: %v, want errChecksum", err)
	}
	bad[0] = 0
	if _, _, _, err := decodeRecord(bad); err != errMagic {
		t.Errorf("bad magic: %v, want errMagic", err)
	}
	// The loop's placeholder record is refused until the writer seals it.
	raw := appendRecordNoCRC(nil, 1, []byte("abc"))
	if _, _, _, err := decodeRecord(raw); err != errChecksum {
		t.Errorf("unsealed record: %v, want errChecksum", err)
	}
	sealRecords(raw)
	if !bytes.Equal(raw, appendRecord(nil, 1, []byte("abc"))) {
		t.Errorf("sealRecords differs from appendRecord")
	}
}

func TestCountBits(t *testing.T) {
	b := []uint64{0xffff_0000_0000_00ff, 0x1, 1 << 63}
	naive := func(from, to uint32) int {
		n := 0
		for i := from; i < to; i++ {
			if b[i>>6]&(1<<(i&63)) != 0 {
				n++
			}
		}
		return n
	}
	for from := uint32(0); from <= 192; from++ {
		for to := from; to <= 192; to++ {
			if got, want := countBits(b, from, to), naive(from, to); got != want {
				t.Fatalf("countBits(%d, %d) = %d, want %d", from, to, got, want)
			}
		}
	}
}

// FuzzDecodeRecord: decoding arbitrary bytes never panics, never reads a record
// past its input, never returns a record whose checksum is wrong, and what
// appendRecord writes decodes back to itself. scanSegment over the same bytes
// returns only records that decode.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte{}, uint32(0), []byte("x"))
	f.Add(appendRecord(nil, 3, []byte("packet")), uint32(3), []byte("packet"))
	f.Add(append(appendRecord(nil, 0, []byte("a")), 0x53, 0x50, 0x4c, 0x31, 0xff, 0xff, 0xff, 0xff), uint32(1), []byte{})
	f.Fuzz(func(t *testing.T, raw []byte, idx uint32, payload []byte) {
		body, gotIdx, n, err := decodeRecord(raw)
		if err == nil {
			if n < headerSize || n > len(raw) || len(body) != n-headerSize {
				t.Fatalf("n=%d len(raw)=%d len(body)=%d", n, len(raw), len(body))
			}
			if crc32.Checksum(raw[12:n], castagnoli) != binary.LittleEndian.Uint32(raw[8:]) {
				t.Fatalf("returned a record whose checksum is wrong")
			}
			if gotIdx != binary.LittleEndian.Uint32(raw[12:]) || !bytes.Equal(body, raw[headerSize:n]) {
				t.Fatalf("body or index not the record's")
			}
		} else if body != nil || n != 0 {
			t.Fatalf("error %v with a body or a size", err)
		}
		res := scanSegment(raw)
		if res.end > len(raw) {
			t.Fatalf("scan end %d past %d", res.end, len(raw))
		}
		prev := -1
		for _, r := range res.recs {
			b, i, n, err := decodeRecord(raw[r.off:])
			if err != nil || i != r.idx || n != r.n || int(i) <= prev || r.off+n > res.end {
				t.Fatalf("scan returned a record that does not decode or is out of order: %+v (%v)", r, err)
			}
			_ = b
			prev = int(i)
		}
		if len(payload) <= 1<<16 {
			rec := appendRecord(append([]byte(nil), raw...), idx, payload)
			b, i, n, err := decodeRecord(rec[len(raw):])
			if err != nil || i != idx || n != len(rec)-len(raw) || !bytes.Equal(b, payload) {
				t.Fatalf("round trip: %v idx %d n %d", err, i, n)
			}
		}
	})
}
