package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// The record format, little endian:
//
//	magic u32 | length u32 | crc u32 | index u32 | body (length bytes)
//
// crc is CRC-32C over index and body, which are contiguous, so the writer checksums
// one slice per record. index is the record's position in its segment (0, 1, ...),
// so an ack names a record without an offset, and a record copied or shifted by
// corruption cannot pass for another.
const (
	headerSize  = 16
	recordMagic = 0x31_4c_50_53 // "SPL1" as bytes on disk
	// MaxRecordBytes bounds a record's body: the largest MAX_BODY_BYTES the proxy
	// accepts (a gzip body is bounded by it after inflating too), so Append never
	// meets a bigger one (it would panic: a caller's bug). A length above it in a
	// header is garbage; a length past the end of the file is a torn tail or, with
	// a valid record after it, corruption: recovery never reads past the file on
	// the word of one damaged field.
	MaxRecordBytes = 1 << 30
	// ackSize is one entry of an ack file: index u32 | CRC-32C of those 4 bytes.
	ackSize = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var magicBytes = []byte{0x53, 0x50, 0x4c, 0x31}

// Why decodeRecord refused a record. errShort at the end of a file is a torn
// tail; anywhere else each of them is corruption.
var (
	errShort    = errors.New("record: short")
	errMagic    = errors.New("record: bad magic")
	errLength   = errors.New("record: length over MaxRecordBytes")
	errChecksum = errors.New("record: checksum mismatch")
)

// decodeRecord reads the record at the start of b: its body (a sub-slice of b), its
// index, and its total size n. It never reads past b and never returns a body whose
// checksum does not match. It is fuzzed (FuzzDecodeRecord).
func decodeRecord(b []byte) (body []byte, idx uint32, n int, err error) {
	if len(b) < headerSize {
		return nil, 0, 0, errShort
	}
	if binary.LittleEndian.Uint32(b) != recordMagic {
		return nil, 0, 0, errMagic
	}
	l := binary.LittleEndian.Uint32(b[4:])
	if l > MaxRecordBytes {
		return nil, 0, 0, errLength
	}
	n = headerSize + int(l)
	if len(b) < n {
		return nil, 0, 0, errShort
	}
	if crc32.Checksum(b[12:n], castagnoli) != binary.LittleEndian.Uint32(b[8:]) {
		return nil, 0, 0, errChecksum
	}
	return b[headerSize:n], binary.LittleEndian.Uint32(b[12:]), n, nil
}

// appendRecordNoCRC appends a record with its checksum left zero: what the event
// loop does (a copy and three stores); the writer fills the checksum (sealRecords)
// off the loop.
func appendRecordNoCRC(dst []byte, idx uint32, body []byte) []byte {
	var h [headerSize]byte
	binary.LittleEndian.PutUint32(h[0:], recordMagic)
	binary.LittleEndian.PutUint32(h[4:], uint32(len(body)))
	binary.LittleEndian.PutUint32(h[12:], idx)
	dst = append(dst, h[:]...)
	return append(dst, body...)
}

// sealRecords fills the checksum of every record in b, which holds whole records
// written by appendRecordNoCRC. Writer goroutine.
func sealRecords(b []byte) {
	for len(b) >= headerSize {
		n := headerSize + int(binary.LittleEndian.Uint32(b[4:]))
		binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[12:n], castagnoli))
		b = b[n:]
	}
}

// appendRecord appends a complete record (tests and the fuzz target).
func appendRecord(dst []byte, idx uint32, body []byte) []byte {
	start := len(dst)
	dst = appendRecordNoCRC(dst, idx, body)
	sealRecords(dst[start:])
	return dst
}

// appendAck appends one ack entry.
func appendAck(dst []byte, idx uint32) []byte {
	// Checksummed in place: a local array handed to crc32 would escape.
	dst = binary.LittleEndian.AppendUint32(dst, idx)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[len(dst)-4:], castagnoli))
}

// decodeAck reads one ack entry; ok is false for a corrupt one.
func decodeAck(e []byte) (idx uint32, ok bool) {
	if len(e) < ackSize {
		return 0, false
	}
	if crc32.Checksum(e[0:4], castagnoli) != binary.LittleEndian.Uint32(e[4:]) {
		return 0, false
	}
	return binary.LittleEndian.Uint32(e), true
}

// scanned is one valid record found by scanSegment.
type scanned struct {
	off int // offset of the record in the file
	n   int // its total size
	idx uint32
}

// scanResult is what scanSegment found in a segment file.
type scanResult struct {
	recs    []scanned
	corrupt int // damaged regions skipped between valid records
	end     int // end of the last valid record: the file is cut here if shorter than the file
}

// scanSegment reads every valid record of a segment file. A region that does not
// decode, followed by a valid record, is corruption: skipped (resynchronising on
// the next magic whose record checks) and counted once. A region that does not
// decode and has no valid record after it is a torn tail: end stops before it. A
// valid record whose index does not grow past the one before it, or is beyond
// what the file could hold, is counted as corruption too (its checksum matched by
// chance or it is a copy), so indexes are unique and bounded.
func scanSegment(b []byte) scanResult {
	var r scanResult
	limit := uint32(len(b)/headerSize) + 1
	p := 0
	next := uint32(0) // the smallest index the next record may have
	for p < len(b) {
		_, idx, n, err := decodeRecord(b[p:])
		if err == nil && idx >= next && idx < limit {
			r.recs = append(r.recs, scanned{off: p, n: n, idx: idx})
			next = idx + 1
			p += n
			r.end = p
			continue
		}
		q := resync(b, p+1, next, limit)
		if q < 0 {
			break // torn tail from p
		}
		r.corrupt++
		p = q
	}
	return r
}

// resync finds the first offset at or after from where a valid record with an
// acceptable index starts, or -1.
func resync(b []byte, from int, next, limit uint32) int {
	for from < len(b) {
		i := bytes.Index(b[from:], magicBytes)
		if i < 0 {
			return -1
		}
		q := from + i
		if _, idx, _, err := decodeRecord(b[q:]); err == nil && idx >= next && idx < limit {
			return q
		}
		from = q + 1
	}
	return -1
}
