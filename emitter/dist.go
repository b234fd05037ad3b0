package emitter

import (
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
)

// maxMessagesPerPacket keeps a mistyped distribution from building megabyte packets.
const maxMessagesPerPacket = 10000

// skewExponent is the Zipf exponent of "skewed:A-B": P(A+k) ∝ (1+k)^-1.2. For 1-50
// about 30% of packets carry one message, the mean is about 9 (uniform: 25.5), and
// a few packets still carry 50.
const skewExponent = 1.2

type distKind uint8

const (
	distFixed distKind = iota
	distUniform
	distSkewed
)

// distribution is a parsed message-count specification. It holds no random state:
// each connection draws from it with its own generator (see counter).
type distribution struct {
	kind     distKind
	min, max int
}

// parseDistribution reads "N", "fixed:N", "uniform:A-B" or "skewed:A-B".
func parseDistribution(spec string) (distribution, error) {
	kind, arg, found := strings.Cut(spec, ":")
	if !found {
		kind, arg = "fixed", spec
	}
	var d distribution
	switch kind {
	case "fixed":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return d, errors.New("want N, fixed:N, uniform:A-B or skewed:A-B")
		}
		d = distribution{kind: distFixed, min: n, max: n}
	case "uniform", "skewed":
		lo, hi, ok := strings.Cut(arg, "-")
		a, errA := strconv.Atoi(lo)
		b, errB := strconv.Atoi(hi)
		if !ok || errA != nil || errB != nil {
			return d, errors.New("want " + kind + ":A-B with integers A <= B")
		}
		d = distribution{kind: distUniform, min: a, max: b}
		if kind == "skewed" {
			d.kind = distSkewed
		}
	default:
		return d, errors.New("unknown distribution " + strconv.Quote(kind) + " (fixed, uniform, skewed)")
	}
	if d.min < 1 || d.max < d.min || d.max > maxMessagesPerPacket {
		return d, errors.New("message counts must satisfy 1 <= A <= B <= " + strconv.Itoa(maxMessagesPerPacket))
	}
	return d, nil
}

func (d distribution) String() string {
	switch d.kind {
	case distUniform:
		return "uniform:" + strconv.Itoa(d.min) + "-" + strconv.Itoa(d.max)
	case distSkewed:
		return "skewed:" + strconv.Itoa(d.min) + "-" + strconv.Itoa(d.max)
	}
	return "fixed:" + strconv.Itoa(d.min)
}

// counter draws message counts from a distribution for one goroutine.
type counter struct {
	d    distribution
	rng  *rand.Rand
	zipf *rand.Zipf
}

func newCounter(d distribution, rng *rand.Rand) counter {
	c := counter{d: d, rng: rng}
	if d.kind == distSkewed && d.max > d.min {
		c.zipf = rand.NewZipf(rng, skewExponent, 1, uint64(d.max-d.min))
	}
	return c
}

func (c *counter) next() int {
	switch {
	case c.d.min == c.d.max:
		return c.d.min
	case c.d.kind == distUniform:
		return c.d.min + c.rng.IntN(c.d.max-c.d.min+1)
	case c.zipf != nil:
		return c.d.min + int(c.zipf.Uint64())
	}
	return c.d.min
}
