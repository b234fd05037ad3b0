package codec

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestGunzip(t *testing.T) {
	var g Gunzipper
	packet := []byte(strings.Repeat(`{"level":"INFO","message":"hello"},`, 100))
	for round := 0; round < 3; round++ { // the reader and buffer are reused
		out, err := g.Gunzip(gz(t, packet), int64(len(packet)))
		if err != nil || !bytes.Equal(out, packet) {
			t.Fatalf("round %d: err %v, %d bytes", round, err, len(out))
		}
	}
	if _, err := g.Gunzip(gz(t, packet), int64(len(packet)-1)); err != ErrGzipTooLarge {
		t.Fatalf("one byte over the limit: %v", err)
	}
	if out, err := g.Gunzip(gz(t, nil), 0); err != nil || len(out) != 0 {
		t.Fatalf("empty: %v %q", err, out)
	}
	two := append(gz(t, []byte("ab")), gz(t, []byte("cd"))...)
	if out, err := g.Gunzip(two, 4); err != nil || string(out) != "abcd" {
		t.Fatalf("concatenated members: %v %q", err, out)
	}
}

func TestGunzipBad(t *testing.T) {
	good := gz(t, []byte("hello, world"))
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)-6] ^= 0xff // CRC-32
	cases := map[string][]byte{
		"empty":            nil,
		"not gzip":         []byte(`{"a":1}`),
		"truncated":        good[:len(good)-3],
		"bad crc":          corrupt,
		"trailing garbage": append(bytes.Clone(good), "junk"...),
	}
	var g Gunzipper
	for name, in := range cases {
		if _, err := g.Gunzip(in, 1<<20); err != ErrGzipBody {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A failure leaves the Gunzipper usable.
	if out, err := g.Gunzip(good, 100); err != nil || string(out) != "hello, world" {
		t.Fatalf("after failures: %v %q", err, out)
	}
}

// A bomb is refused after limit+1 output bytes: most of its compressed input is
// never read, and the output buffer never grows past limit+1.
func TestGunzipBomb(t *testing.T) {
	bomb := gz(t, make([]byte, 16<<20))
	const limit = 1 << 20
	var g Gunzipper
	if _, err := g.Gunzip(bomb, limit); err != ErrGzipTooLarge {
		t.Fatalf("bomb: %v", err)
	}
	if cap(g.out) > limit+1 {
		t.Fatalf("output buffer grew to %d", cap(g.out))
	}
	if read := len(bomb) - g.src.Len(); read > len(bomb)/8 {
		t.Fatalf("read %d of %d compressed bytes to refuse", read, len(bomb))
	}
}

func TestGunzipAllocs(t *testing.T) {
	in := gz(t, []byte(strings.Repeat("x", 5000)))
	var g Gunzipper
	g.Gunzip(in, 1<<20)
	allocs := testing.AllocsPerRun(50, func() {
		if out, err := g.Gunzip(in, 1<<20); err != nil || len(out) != 5000 {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per gunzip", allocs)
	}
}
