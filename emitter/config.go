package emitter

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults for the fields of Config left at their zero value.
const (
	DefaultTarget       = "http://localhost:8080"
	DefaultRate         = 1000 // command line only: a zero Config.Rate means flat out
	DefaultConcurrency  = 16
	DefaultPacketSize   = 5
	DefaultMessageBytes = 100 // with 5 messages a packet is about 1.1 KB
	DefaultRetries      = 5
	DefaultRetryBudget  = 0.2
	DefaultPipeline     = 1
	DefaultTimeout      = 5 * time.Second
	DefaultGrace        = 2 * time.Second
	DefaultDownTimeout  = 30 * time.Second
)

// Config is one emitter run. Zero fields take the defaults above; where zero is a
// meaningful setting of its own (Rate, Duration, Count, MinAccept) it means "off".
type Config struct {
	Target       string        // "http://host:port[/path]" or "host:port"; path defaults to /ingest
	Rate         float64       // packets/s over all connections; 0 = as fast as possible
	Concurrency  int           // keep-alive connections, one goroutine each
	Duration     time.Duration // stop starting new packets after this long; 0 = until ctx ends
	Count        int           // stop after this many packets were finally answered; 0 = no limit
	PacketSize   int           // messages per packet when Messages is empty
	Messages     string        // message-count distribution: "N", "fixed:N", "uniform:A-B", "skewed:A-B"
	MessageBytes int           // approximate size of each message's text
	EmitterID    string        // defaults to "emitter-<hostname>"
	Token        string        // when set, every request carries "Authorization: Bearer <Token>"; never printed
	Retries      int           // re-sends per packet; negative = never re-send
	RetryBudget  float64       // re-sends allowed as a fraction of first sends; negative = unlimited
	Pipeline     int           // requests in flight per connection
	Timeout      time.Duration // longest wait for a response or a connect
	Grace        time.Duration // how long in-flight requests may still be answered after the stop
	DownTimeout  time.Duration // end the run (ErrTargetDown) when no connect succeeded for this long; negative = never
	JSON         bool          // Main: print the report as one JSON object
	MinAccept    float64       // Main: exit 1 when accepted/sent falls under this fraction
	Progress     bool          // Main: print the live progress line even when stderr is not a terminal

	// OnAccepted is for tests: called once per finally-accepted packet, possibly
	// from several goroutines at once.
	OnAccepted func(packetID string, messages int)
}

// runConfig is a validated Config with its derived values.
type runConfig struct {
	Config
	addr      string // host:port to dial
	host      string // Host header
	path      string // request target
	dist      distribution
	emitterID string // raw, for OnAccepted
	headers   string // extra request header fields (Authorization), each after a CRLF, for codec.AppendPostHeadWith
}

// resolve applies defaults and validates cfg. Errors are phrased for a command line.
func (cfg Config) resolve() (runConfig, error) {
	rc := runConfig{Config: cfg}
	c := &rc.Config
	if c.Target == "" {
		c.Target = DefaultTarget
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.PacketSize == 0 {
		c.PacketSize = DefaultPacketSize
	}
	if c.MessageBytes == 0 {
		c.MessageBytes = DefaultMessageBytes
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	if c.Retries < 0 {
		c.Retries = 0
	}
	if c.RetryBudget == 0 {
		c.RetryBudget = DefaultRetryBudget
	}
	if c.Pipeline == 0 {
		c.Pipeline = DefaultPipeline
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.DownTimeout == 0 {
		c.DownTimeout = DefaultDownTimeout
	}
	if c.DownTimeout < 0 {
		c.DownTimeout = 0
	}
	if c.EmitterID == "" {
		c.EmitterID = defaultEmitterID()
	}
	rc.emitterID = c.EmitterID

	switch {
	case c.Rate < 0:
		return rc, errors.New("--rate must be >= 0")
	case c.Concurrency < 0:
		return rc, errors.New("--concurrency must be > 0")
	case c.Duration < 0:
		return rc, errors.New("--duration must be >= 0")
	case c.Count < 0:
		return rc, errors.New("--count must be >= 0")
	case c.PacketSize < 0:
		return rc, errors.New("--packet-size must be > 0")
	case c.MessageBytes < 0 || c.MessageBytes > 1<<20:
		return rc, errors.New("--message-bytes must be between 1 and 1048576")
	case c.Pipeline < 0 || c.Pipeline > 1024:
		return rc, errors.New("--pipeline must be between 1 and 1024")
	case c.Timeout < 0:
		return rc, errors.New("--timeout must be > 0")
	case c.Grace < 0:
		return rc, errors.New("--grace must be > 0")
	case c.MinAccept < 0 || c.MinAccept > 1:
		return rc, errors.New("--min-accept must be between 0 and 1")
	}

	if c.Token != "" {
		for i := 0; i < len(c.Token); i++ {
			// Never echo the token: it is a secret.
			if b := c.Token[i]; b <= ' ' || b >= 0x7f {
				return rc, errors.New("--token must be printable ASCII without spaces")
			}
		}
		rc.headers = "\r\nAuthorization: Bearer " + c.Token
	}

	spec := c.Messages
	if spec == "" {
		spec = strconv.Itoa(c.PacketSize)
	}
	d, err := parseDistribution(spec)
	if err != nil {
		return rc, fmt.Errorf("--messages %q: %w", spec, err)
	}
	rc.dist = d

	rc.addr, rc.host, rc.path, err = parseTarget(c.Target)
	if err != nil {
		return rc, fmt.Errorf("--target %q: %w", c.Target, err)
	}
	return rc, nil
}

// parseTarget accepts "http://host:port[/path]" or a bare "host:port". The path
// defaults to /ingest, the distributor's endpoint.
func parseTarget(target string) (addr, host, path string, err error) {
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", "", "", err
	}
	if u.Scheme != "http" {
		return "", "", "", fmt.Errorf("scheme %q not supported (http only)", u.Scheme)
	}
	if u.Hostname() == "" {
		return "", "", "", errors.New("no host")
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	addr = net.JoinHostPort(u.Hostname(), port)
	host = u.Host
	path = u.EscapedPath()
	if path == "" || path == "/" {
		path = "/ingest"
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	return addr, host, path, nil
}

func defaultEmitterID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "emitter"
	}
	return "emitter-" + h
}
