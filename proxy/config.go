package proxy

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sluicelog/sluice/cli"
	"github.com/sluicelog/sluice/codec"
	"github.com/sluicelog/sluice/spool"
)

// Config is everything the distributor can be told. Every field comes from an
// environment variable (the seed distributor's names where it had one) and the flag
// of the same meaning; flags win.
type Config struct {
	Port              int            // PORT: ingest and API port
	IngestBufferSize  int            // INGEST_BUFFER_SIZE: accepted packets not yet delivered, whole distributor
	QueueSize         int            // PER_ANALYZER_QUEUE_SIZE: packets queued or in flight per analyzer
	QueueBytes        int64          // PER_ANALYZER_QUEUE_BYTES: packet bytes queued or in flight per analyzer
	MaxBufferBytes    int64          // MAX_BUFFER_BYTES: packet bytes held by the whole distributor; 0 = no limit
	Analyzers         []AnalyzerSpec // ANALYZERS: url=weight,...
	AnalyzersDNS      string         // ANALYZERS_DNS: name:port whose addresses are analyzers (dns.go)
	DNSWeight         float64        // ANALYZERS_DNS_WEIGHT: weight of each analyzer found through ANALYZERS_DNS
	DNSRefresh        time.Duration  // DNS_REFRESH_SEC: how often ANALYZERS_DNS is resolved again
	DNSServer         string         // DNS_SERVER: host:port of the DNS server to ask ("" = the system's)
	SenderRetries     int            // SENDER_RETRIES: re-sends after a failed attempt
	SenderTimeout     time.Duration  // SENDER_TIMEOUT_MS: answer deadline for one upstream request
	HealthInterval    time.Duration  // HEALTH_CHECK_INTERVAL_SEC
	MaxFailures       int            // MAX_FAILURES: consecutive failures that open a breaker
	MetricsAddr       string         // METRICS_ADDR: Prometheus, pprof and admin API
	ListenAddr        string         // LISTEN_ADDR: ingest host:port; wins over PORT when set
	AdminToken        Secret         // ADMIN_TOKEN, or the contents of ADMIN_TOKEN_FILE
	AdminTokenFile    string         // ADMIN_TOKEN_FILE: path of a file holding the admin token (LoadConfig reads it)
	Loops             int            // LOOPS: event loops (shards); default defaultLoops(GOMAXPROCS)
	UpstreamConns     int            // UPSTREAM_CONNS: keep-alive connections per analyzer per loop
	PipelineDepth     int            // PIPELINE_DEPTH: requests in flight per upstream connection
	BatchMax          int            // BATCH_MAX: packets per batch request to batch-capable analyzers (1 = never batch)
	BatchLinger       time.Duration  // BATCH_LINGER_US: longest wait for a full batch or window before a write upstream
	SlowStart         time.Duration  // SLOW_START_SEC: weight ramp after an analyzer rejoins
	BreakerBackoffMax time.Duration  // BREAKER_BACKOFF_MAX_SEC: cap of the re-open backoff
	DownProbeInterval time.Duration  // DOWN_PROBE_INTERVAL_MS: health probe interval while an analyzer is down
	Spill             bool           // SPILL: when an analyzer's queue is full, place the packet on another (true) or answer 503 (false)
	ShedBelow         ShedLevel      // SHED_BELOW: past SHED_AT, packets whose most severe message is below this level get 503 (ShedOff: never)
	ShedAt            float64        // SHED_AT: fraction of the backlog's bound past which SHED_BELOW sheds
	Routing           RoutingMode    // ROUTING: weighted (exact) or weighted-capacity (capacity.go)
	CapacityMinShare  float64        // CAPACITY_MIN_SHARE: floor of the capacity factor, × the analyzer's weight
	Affinity          AffinityMode   // AFFINITY: emitter_id keeps an emitter's packets on one analyzer (affinity.go)
	AffinityLoadBound float64        // AFFINITY_LOAD_BOUND: each analyzer's message share at most this × its weight
	MaxBodyBytes      int64          // MAX_BODY_BYTES
	MaxHeaderBytes    int            // MAX_HEADER_BYTES
	MaxConns          int            // MAX_CONNS: inbound connections, whole distributor
	MaxConnsPerIP     int            // MAX_CONNS_PER_IP: inbound connections from one client address, whole distributor (0 = no limit)
	EmitterRate       float64        // EMITTER_RATE_LIMIT: packets/s per emitter_id, 0 = off
	EmitterBurst      int            // EMITTER_BURST: packets an emitter may send at once above its rate
	RequestTimeout    time.Duration  // REQUEST_TIMEOUT_SEC: a started request must be complete within this (slowloris)
	IdleTimeout       time.Duration  // IDLE_TIMEOUT_SEC: keep-alive connections idle this long are closed
	ShutdownTimeout   time.Duration  // SHUTDOWN_TIMEOUT_SEC
	LogLevel          string         // LOG_LEVEL: debug, info, warn, error
	LogFormat         string         // LOG_FORMAT: text or json
	IngestTokens      Secrets        // INGEST_TOKENS: bearer tokens POST /ingest accepts (none: no check)
	IngestTokensFile  string         // INGEST_TOKENS_FILE: a file of such tokens, one a line
	ConfigFile        string         // CONFIG_FILE: YAML file of these settings (configfile.go)
	SpoolDir          string         // SPOOL_DIR: write-ahead spool directory ("" = no spool: a 202 means "in memory")
	SpoolSync         spool.SyncMode // SPOOL_SYNC: always (a 202 waits for its group's fdatasync) or interval
	SpoolSyncInterval time.Duration  // SPOOL_SYNC_INTERVAL_MS: fdatasync period with SPOOL_SYNC=interval
	SpoolSegmentBytes int64          // SPOOL_SEGMENT_BYTES: a spool segment file is sealed at this size
	SpoolMaxBytes     int64          // SPOOL_MAX_BYTES: live spool bytes at which new packets get 503

	raw map[string]string // each setting's value as written, by env name (Config.apply)
}

// AnalyzerSpec is one analyzer as configured.
type AnalyzerSpec struct {
	Name   string
	URL    string
	Addr   string // host:port
	Host   string // Host header value
	Weight float64
	// Written is the weight as the configuration wrote it, before ParseAnalyzers
	// normalised the list (0 for an analyzer added by the admin API or DNS, whose
	// Weight is as given). The controller keeps configured weights in these units
	// and normalises over all analyzers itself, so a reload can set the one
	// weight the file changed and leave an operator's weight on another alone.
	Written float64
}

// configuredWeight is the weight the controller starts the analyzer with, in the
// units the operator wrote (the file, ANALYZERS, the admin API).
func (a AnalyzerSpec) configuredWeight() float64 {
	if a.Written > 0 {
		return a.Written
	}
	return a.Weight
}

// ConfigError names the setting, the value (never a secret's) and what is wrong
// with it: the one format of a bad setting that every subcommand shares.
type ConfigError = cli.Error

// setting is one configuration variable: its env name, flag name, default and parser.
type setting struct {
	env, flag, def, help string
	set                  func(c *Config, v string) error
}

func settings() []setting {
	return []setting{
		{"CONFIG_FILE", "config", "", "YAML file of these settings, keys in lower case (port, analyzers, ...); the environment and flags override it", func(c *Config, v string) error { c.ConfigFile = v; return nil }},
		{"PORT", "port", "8080", "ingest and API port", intSetting(func(c *Config, n int) { c.Port = n }, 0, 65535)},
		{"INGEST_BUFFER_SIZE", "ingest-buffer-size", "10000", "accepted packets not yet delivered, whole distributor", intSetting(func(c *Config, n int) { c.IngestBufferSize = n }, 1, 1<<30)},
		{"PER_ANALYZER_QUEUE_SIZE", "per-analyzer-queue-size", "10000", "packets queued or in flight per analyzer", intSetting(func(c *Config, n int) { c.QueueSize = n }, 1, 1<<30)},
		{"PER_ANALYZER_QUEUE_BYTES", "per-analyzer-queue-bytes", "67108864", "packet bytes queued or in flight per analyzer", int64Setting(func(c *Config, n int64) { c.QueueBytes = n }, 1<<10, 1<<40)},
		{"MAX_BUFFER_BYTES", "max-buffer-bytes", "0", "packet bytes held (queued or in flight) by the whole distributor, all analyzers; sets GOMEMLIMIT when that is unset (0 = no limit)", int64Setting(func(c *Config, n int64) { c.MaxBufferBytes = n }, 0, 1<<40)},
		{"ANALYZERS", "analyzers", "", "analyzers with weights: url=weight,url=weight,...", func(c *Config, v string) error {
			specs, err := ParseAnalyzers(v)
			c.Analyzers = specs
			return err
		}},
		{"ANALYZERS_DNS", "analyzers-dns", "", "DNS name:port whose A/AAAA addresses are analyzers (http://ip:port), resolved again every DNS_REFRESH_SEC; with or instead of ANALYZERS", func(c *Config, v string) error {
			host, port, err := net.SplitHostPort(strings.TrimSpace(v))
			if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
				return errors.New("want name:port, e.g. analyzers.internal:9001")
			}
			c.AnalyzersDNS = net.JoinHostPort(host, port)
			return nil
		}},
		{"ANALYZERS_DNS_WEIGHT", "analyzers-dns-weight", "1", "weight of each analyzer found through ANALYZERS_DNS (ANALYZERS' weights together count 1)", func(c *Config, v string) error {
			w, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || !validWeight(w) {
				return errors.New("want a positive number")
			}
			c.DNSWeight = w
			return nil
		}},
		{"DNS_REFRESH_SEC", "dns-refresh-sec", "10", "how often ANALYZERS_DNS is resolved again, s", positive(durSetting(func(c *Config, d time.Duration) { c.DNSRefresh = d }, time.Second))},
		{"DNS_SERVER", "dns-server", "", "DNS server host:port that ANALYZERS_DNS is resolved with (unset: the system's, from /etc/resolv.conf)", func(c *Config, v string) error {
			if _, _, err := net.SplitHostPort(strings.TrimSpace(v)); err != nil {
				return errors.New("want host:port, e.g. 10.0.0.2:53")
			}
			c.DNSServer = strings.TrimSpace(v)
			return nil
		}},
		{"SENDER_RETRIES", "sender-retries", "3", "re-sends of a packet after a failed attempt", intSetting(func(c *Config, n int) { c.SenderRetries = n }, 0, 100)},
		{"SENDER_TIMEOUT_MS", "sender-timeout-ms", "500", "answer deadline of one upstream request, ms", positive(durSetting(func(c *Config, d time.Duration) { c.SenderTimeout = d }, time.Millisecond))},
		{"HEALTH_CHECK_INTERVAL_SEC", "health-check-interval-sec", "30", "GET /health probe interval, s", positive(durSetting(func(c *Config, d time.Duration) { c.HealthInterval = d }, time.Second))},
		{"MAX_FAILURES", "max-failures", "5", "consecutive failures that open an analyzer's breaker", intSetting(func(c *Config, n int) { c.MaxFailures = n }, 1, 1<<20)},
		{"METRICS_ADDR", "metrics-addr", ":9100", "Prometheus /metrics, pprof and admin API address (empty: off)", addrSetting(func(c *Config, v string) { c.MetricsAddr = v })},
		{"LISTEN_ADDR", "listen-addr", "", "ingest address host:port, e.g. 127.0.0.1:8080 (wins over PORT; empty: all interfaces on PORT)", addrSetting(func(c *Config, v string) { c.ListenAddr = v })},
		{"ADMIN_TOKEN", "admin-token", "", "bearer token the admin API and pprof require (empty: loopback clients only); prefer ADMIN_TOKEN_FILE", adminTokenSetting},
		{"ADMIN_TOKEN_FILE", "admin-token-file", "", "file holding ADMIN_TOKEN (a trailing newline is ignored)", adminTokenFileSetting},
		{"LOOPS", "loops", "0", "event loops (shards); 0 = one per CPU, but one on a machine of 1 or 2 CPUs; GOMAXPROCS is lowered to match unless set", intSetting(func(c *Config, n int) { c.Loops = n }, 0, 1024)},
		{"UPSTREAM_CONNS", "upstream-conns", "2", "keep-alive connections per analyzer per event loop", intSetting(func(c *Config, n int) { c.UpstreamConns = n }, 1, 64)},
		{"PIPELINE_DEPTH", "pipeline-depth", "32", "requests in flight per upstream connection", intSetting(func(c *Config, n int) { c.PipelineDepth = n }, 1, 1024)},
		{"BATCH_MAX", "batch-max", "64", "packets per batch request to batch-capable analyzers (1 = never batch)", intSetting(func(c *Config, n int) { c.BatchMax = n }, 1, 4096)},
		{"BATCH_LINGER_US", "batch-linger-us", "1000", "longest a queued packet waits for a full batch or window before it is sent to its analyzer, µs (0 = send at once)", atMost(1e6, durSetting(func(c *Config, d time.Duration) { c.BatchLinger = d }, time.Microsecond))},
		{"SLOW_START_SEC", "slow-start-sec", "5", "weight ramp after an analyzer rejoins, s (0 = none)", durSetting(func(c *Config, d time.Duration) { c.SlowStart = d }, time.Second)},
		{"BREAKER_BACKOFF_MAX_SEC", "breaker-backoff-max-sec", "30", "cap of the breaker's re-open backoff, s", durSetting(func(c *Config, d time.Duration) { c.BreakerBackoffMax = d }, time.Second)},
		{"DOWN_PROBE_INTERVAL_MS", "down-probe-interval-ms", "1000", "GET /health probe interval while an analyzer is down or not yet heard from, ms", positive(durSetting(func(c *Config, d time.Duration) { c.DownProbeInterval = d }, time.Millisecond))},
		{"SPILL", "spill", "true", "when an analyzer's queue is full, place the packet on another analyzer (true) or answer 503 (false)", boolSetting(func(c *Config, b bool) { c.Spill = b })},
		{"SHED_BELOW", "shed-below", "", "once the backlog passes SHED_AT of INGEST_BUFFER_SIZE, a packet whose most severe message is below this level (TRACE, DEBUG, INFO, WARN, ERROR or FATAL) gets 503 + Retry-After (empty: off)", func(c *Config, v string) error {
			l, err := parseShedLevel(v)
			c.ShedBelow = l
			return err
		}},
		{"SHED_AT", "shed-at", "0.8", "fraction of the backlog's bound (INGEST_BUFFER_SIZE) past which SHED_BELOW sheds", func(c *Config, v string) error {
			x, err := parseShedAt(v)
			if err == nil {
				c.ShedAt = x
			}
			return err
		}},
		{"ROUTING", "routing", "weighted", "weighted (each analyzer's message share is its weight) or weighted-capacity (an analyzer whose backlog or answer latency grows out of line with the others' gets less, down to CAPACITY_MIN_SHARE × its weight)", func(c *Config, v string) error {
			m, err := parseRouting(v)
			c.Routing = m
			return err
		}},
		{"CAPACITY_MIN_SHARE", "capacity-min-share", "0.5", "with ROUTING=weighted-capacity, the least fraction of its weight an analyzer keeps however slow it is", func(c *Config, v string) error {
			x, err := parseMinShare(v)
			if err == nil {
				c.CapacityMinShare = x
			}
			return err
		}},
		{"AFFINITY", "affinity", "", "emitter_id: every packet of one emitter_id goes to the same analyzer (consistent hashing with bounded loads); empty: off", func(c *Config, v string) error {
			m, err := parseAffinity(v)
			c.Affinity = m
			return err
		}},
		{"AFFINITY_LOAD_BOUND", "affinity-load-bound", "1.25", "with AFFINITY, each analyzer's message share stays within this × its weight (plus one packet)", func(c *Config, v string) error {
			x, err := parseLoadBound(v)
			if err == nil {
				c.AffinityLoadBound = x
			}
			return err
		}},
		{"MAX_BODY_BYTES", "max-body-bytes", "1048576", "largest accepted request body", int64Setting(func(c *Config, n int64) { c.MaxBodyBytes = n }, 64, 1<<30)},
		{"MAX_HEADER_BYTES", "max-header-bytes", "16384", "largest accepted request header block", intSetting(func(c *Config, n int) { c.MaxHeaderBytes = n }, 256, 1<<20)},
		{"MAX_CONNS", "max-conns", "10000", "inbound connections, whole distributor", intSetting(func(c *Config, n int) { c.MaxConns = n }, 1, 1<<24)},
		{"MAX_CONNS_PER_IP", "max-conns-per-ip", "0", "inbound connections from one client address, whole distributor; over it 503 + Retry-After (0 = no limit)", intSetting(func(c *Config, n int) { c.MaxConnsPerIP = n }, 0, 1<<24)},
		{"EMITTER_RATE_LIMIT", "emitter-rate-limit", "0", "packets/s each emitter_id may send before 429 + Retry-After (0 = no limit)", func(c *Config, v string) error {
			x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil || x < 0 || x != x || x > 1e9 {
				return errors.New("want a non-negative number")
			}
			c.EmitterRate = x
			return nil
		}},
		{"EMITTER_BURST", "emitter-burst", "100", "packets an emitter may send at once above its rate", intSetting(func(c *Config, n int) { c.EmitterBurst = n }, 1, 1<<30)},
		{"REQUEST_TIMEOUT_SEC", "request-timeout-sec", "10", "a request's bytes must all arrive within this once it started (a connection's first request: from accept), s", durSetting(func(c *Config, d time.Duration) { c.RequestTimeout = d }, time.Second)},
		{"IDLE_TIMEOUT_SEC", "idle-timeout-sec", "120", "idle keep-alive connections are closed after this, s", durSetting(func(c *Config, d time.Duration) { c.IdleTimeout = d }, time.Second)},
		{"SHUTDOWN_TIMEOUT_SEC", "shutdown-timeout-sec", "10", "time to flush queued packets on SIGTERM, s", durSetting(func(c *Config, d time.Duration) { c.ShutdownTimeout = d }, time.Second)},
		{"LOG_LEVEL", "log-level", "info", "debug, info, warn or error", func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "debug", "info", "warn", "error":
				c.LogLevel = strings.ToLower(v)
				return nil
			}
			return errors.New("want debug, info, warn or error")
		}},
		{"LOG_FORMAT", "log-format", "text", "text or json", func(c *Config, v string) error {
			switch strings.ToLower(v) {
			case "text", "json":
				c.LogFormat = strings.ToLower(v)
				return nil
			}
			return errors.New("want text or json")
		}},
		{"INGEST_TOKENS", "ingest-tokens", "", "bearer tokens POST /ingest requires, comma-separated (empty: no check)", func(c *Config, v string) error {
			t, err := parseTokens(v)
			c.IngestTokens = t
			return err
		}},
		{"INGEST_TOKENS_FILE", "ingest-tokens-file", "", "file of bearer tokens POST /ingest requires, one a line (empty: none)", func(c *Config, v string) error {
			if v != "" {
				if _, err := readTokenFile(v); err != nil {
					return errors.New(err.(*ConfigError).Problem)
				}
			}
			c.IngestTokensFile = v
			return nil
		}},
		{"SPOOL_DIR", "spool-dir", "", "write-ahead spool directory: a 202 means the packet is on disk and survives kill -9 (empty: no spool, a 202 means in memory)", func(c *Config, v string) error { c.SpoolDir = strings.TrimSpace(v); return nil }},
		{"SPOOL_SYNC", "spool-sync", "always", "with SPOOL_DIR: always (a 202 waits for the fdatasync of its group) or interval (a 202 waits for the write of its group, not its sync; fdatasync every SPOOL_SYNC_INTERVAL_MS)", func(c *Config, v string) error {
			m, err := spool.ParseSyncMode(strings.ToLower(strings.TrimSpace(v)))
			c.SpoolSync = m
			return err
		}},
		{"SPOOL_SYNC_INTERVAL_MS", "spool-sync-interval-ms", "100", "with SPOOL_SYNC=interval: fdatasync period, ms", atMost(60000, positive(durSetting(func(c *Config, d time.Duration) { c.SpoolSyncInterval = d }, time.Millisecond)))},
		{"SPOOL_SEGMENT_BYTES", "spool-segment-bytes", "67108864", "a spool segment file is sealed (and a new one started) at this size", int64Setting(func(c *Config, n int64) { c.SpoolSegmentBytes = n }, 1<<16, 1<<32)},
		{"SPOOL_MAX_BYTES", "spool-max-bytes", "1073741824", "bytes of live spool segments at which new packets get 503 spool full + Retry-After (at least SPOOL_SEGMENT_BYTES)", int64Setting(func(c *Config, n int64) { c.SpoolMaxBytes = n }, 1<<16, 1<<50)},
	}
}

// Setting documents one configuration variable: its environment name, flag,
// default and meaning; Required when the distributor does not start without it.
type Setting struct {
	Env, Flag, Default, Help string
	Required                 bool
}

// Settings lists every variable the distributor reads, in the order of --help.
func Settings() []Setting {
	var out []Setting
	for _, s := range settings() {
		out = append(out, Setting{s.env, s.flag, s.def, s.help, false})
	}
	return out
}

// DefaultConfig is the configuration with every default applied and no analyzers.
func DefaultConfig() Config {
	var c Config
	for _, s := range settings() {
		if s.def == "" {
			continue
		}
		if err := c.apply(s, s.def); err != nil {
			panic("proxy: bad default for " + s.env + ": " + err.Error())
		}
	}
	return c
}

// LoadConfig reads the config file (CONFIG_FILE or --config), the environment
// (through getenv) and then args as flags. Unset and empty variables take their
// defaults; a flag overrides its variable, which overrides the file. The error lists
// every problem found (ConfigErrors when there is more than one). -h writes the help
// to usage and returns flag.ErrHelp; nothing else is printed.
func LoadConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	return LoadConfigLookup(args, func(k string) (string, bool) { v := getenv(k); return v, v != "" }, usage)
}

// LoadConfigLookup is LoadConfig with os.LookupEnv semantics: a variable set to ""
// applies "" to a setting that accepts it (METRICS_ADDR="" turns the admin port
// off) and counts as unset for the others.
func LoadConfigLookup(args []string, lookup func(string) (string, bool), usage io.Writer) (Config, error) {
	c := DefaultConfig()
	all := settings()
	errs := applyConfigFile(&c, configFilePath(args, lookup), all)
	for _, s := range all {
		if v, ok := lookup(s.env); ok {
			if err := c.apply(s, v); err != nil && v != "" {
				errs = append(errs, &ConfigError{Name: s.env, Value: v, Problem: err.Error()})
			}
		}
	}
	fs := flag.NewFlagSet("sluice distributor", flag.ContinueOnError)
	envOf := make(map[string]string, len(all))
	for _, s := range all {
		s := s
		fs.Func(s.flag, s.help, func(v string) error {
			if err := c.apply(s, v); err != nil {
				errs = append(errs, &ConfigError{Name: "--" + s.flag, Value: v, Problem: err.Error()})
			}
			return nil // go on: --check lists every problem
		})
		fs.Lookup(s.flag).DefValue = s.def
		envOf[s.flag] = s.env
	}
	fs.Bool("check", false, "validate the configuration (file, environment, flags) without serving: exit 0, or 2 listing every problem")
	cmd := cli.Command{
		Name:    "sluice distributor",
		Summary: "Route log packets from emitters (POST /ingest) to analyzers by message weight.",
		Flags:   fs,
		Env:     func(flag string) string { return envOf[flag] },
	}
	if err := cmd.Parse(args, nil); errors.Is(err, flag.ErrHelp) {
		cmd.Usage(usage)
		return c, err
	} else if err != nil {
		errs = append(errs, err)
	}
	if len(c.Analyzers) == 0 && c.AnalyzersDNS == "" && !namesAnalyzers(errs) {
		errs = append(errs, &ConfigError{Name: "ANALYZERS", Value: "", Problem: "at least one analyzer is required, e.g. http://127.0.0.1:9001=0.5,http://127.0.0.1:9002=0.5 (or ANALYZERS_DNS=name:port)"})
	}
	if len(errs) == 0 && c.SpoolMaxBytes < c.SpoolSegmentBytes { // checked once both parsed
		errs = append(errs, &ConfigError{Name: "SPOOL_MAX_BYTES", Value: strconv.FormatInt(c.SpoolMaxBytes, 10), Problem: "must be at least SPOOL_SEGMENT_BYTES (" + strconv.FormatInt(c.SpoolSegmentBytes, 10) + ")"})
	}
	if err := configErr(errs); err != nil {
		return c, err
	}
	if c.Loops == 0 {
		c.Loops = defaultLoops(runtime.GOMAXPROCS(0))
	}
	return c, c.resolveAdminToken()
}

// defaultLoops is LOOPS=0's number of event loops on cpus CPUs: one per CPU, but
// one up to 2 CPUs. On 2 CPUs a second loop did not add throughput (the other CPU
// is busy with the kernel's side of loopback and whatever shares the machine) and
// cost CPU per packet: wake-ups and Go scheduler hand-offs between two loops that
// each find half the work (docs/benchmarks.md, "Cost per packet"). From 3 CPUs
// on, a loop per CPU, so cores that are free are used.
func defaultLoops(cpus int) int {
	if cpus <= 2 {
		return 1
	}
	return cpus
}

// ParseAnalyzers parses "url=weight,url=weight". Weights must be positive; they are
// normalised to sum to 1 (Normalised reports whether that changed them).
func ParseAnalyzers(v string) ([]AnalyzerSpec, error) {
	var specs []AnalyzerSpec
	seen := map[string]bool{}
	for i, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		eq := strings.LastIndexByte(item, '=')
		if eq < 0 {
			return nil, fmt.Errorf("item %d %q: want url=weight", i+1, item)
		}
		raw, ws := strings.TrimSpace(item[:eq]), strings.TrimSpace(item[eq+1:])
		w, err := strconv.ParseFloat(ws, 64)
		if err != nil || w <= 0 || w != w || w > 1e9 {
			return nil, fmt.Errorf("item %d %q: weight must be a positive number", i+1, item)
		}
		spec, ok := analyzerURL(raw)
		if !ok {
			return nil, fmt.Errorf("item %d %q: want an http://host:port URL", i+1, item)
		}
		if seen[spec.Addr] {
			return nil, fmt.Errorf("item %d %q: analyzer listed twice", i+1, item)
		}
		seen[spec.Addr] = true
		spec.Weight, spec.Written = w, w
		specs = append(specs, spec)
	}
	if len(specs) == 0 {
		return nil, errors.New("no analyzers")
	}
	names := map[string]bool{}
	for i := range specs {
		specs[i].Name = analyzerName(specs[i].URL, i)
		if names[specs[i].Name] {
			specs[i].Name = "analyzer-" + strconv.Itoa(i+1)
		}
		names[specs[i].Name] = true
	}
	sum := 0.0
	for _, s := range specs {
		sum += s.Weight
	}
	for i := range specs {
		specs[i].Weight /= sum
	}
	return specs, nil
}

// analyzerURL reads an analyzer's URL ("host:port" means http://host:port) into a
// spec without name and weight; false when it is not an http URL with a host.
func analyzerURL(raw string) (AnalyzerSpec, bool) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return AnalyzerSpec{}, false
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return AnalyzerSpec{URL: raw, Addr: addr, Host: u.Host}, true
}

// WeightsNormalised reports whether the configured weights did not sum to 1 (within
// 1e-6), so the caller can log that they were scaled.
func WeightsNormalised(v string) (sum float64, changed bool) {
	for _, item := range strings.Split(v, ",") {
		if eq := strings.LastIndexByte(item, '='); eq >= 0 {
			w, _ := strconv.ParseFloat(strings.TrimSpace(item[eq+1:]), 64)
			sum += w
		}
	}
	d := sum - 1
	return sum, d > 1e-6 || d < -1e-6
}

// analyzerName derives the seed's label: the URL's host name when it looks like a
// name ("analyzer-1" from http://analyzer-1:9001), else "analyzer-<n>" by position.
func analyzerName(raw string, i int) string {
	if h, ok := hostLabel(raw); ok {
		return h
	}
	return "analyzer-" + strconv.Itoa(i+1)
}

// hostLabel is the URL's host name when it looks like a name (not an address, not
// localhost).
func hostLabel(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", false
	}
	h := u.Hostname()
	return h, h != "" && net.ParseIP(h) == nil && h != "localhost"
}

// Limits turns the configuration into the request parser's limits.
func (c *Config) Limits() codec.Limits {
	return codec.Limits{MaxHeaderBytes: c.MaxHeaderBytes, MaxBodyBytes: c.MaxBodyBytes}
}

func intSetting(f func(*Config, int), lo, hi int) func(*Config, string) error {
	return wholeSetting(f, lo, hi)
}

func int64Setting(f func(*Config, int64), lo, hi int64) func(*Config, string) error {
	return wholeSetting(f, lo, hi)
}

// wholeSetting parses a whole number within [lo, hi].
func wholeSetting[T int | int64](f func(*Config, T), lo, hi T) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return errors.New("want a whole number")
		}
		if n < int64(lo) || n > int64(hi) {
			return fmt.Errorf("want a number from %d to %d", lo, hi)
		}
		f(c, T(n))
		return nil
	}
}

// durSetting parses a count of unit (the seed's _MS and _SEC variables); fractions
// are allowed so tests can use sub-second intervals.
func durSetting(f func(*Config, time.Duration), unit time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || x < 0 || x != x || x > 1e7 {
			return errors.New("want a non-negative number")
		}
		d := time.Duration(x * float64(unit))
		if x > 0 && d <= 0 { // would be a zero duration: a ticker on it panics
			return errors.New("too small: want 0 or at least 1 ns")
		}
		f(c, d)
		return nil
	}
}

// atMost refuses values above max (in the setting's own unit).
func atMost(max float64, set func(*Config, string) error) func(*Config, string) error {
	return func(c *Config, v string) error {
		if x, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && x > max {
			return fmt.Errorf("want at most %g", max)
		}
		return set(c, v)
	}
}

// positive refuses 0 for a duration that must pass before something happens.
func positive(set func(*Config, string) error) func(*Config, string) error {
	return func(c *Config, v string) error {
		if x, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && x == 0 {
			return errors.New("want a positive number")
		}
		return set(c, v)
	}
}

func boolSetting(f func(*Config, bool)) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return errors.New("want true or false")
		}
		f(c, b)
		return nil
	}
}

// Getenv is os.Getenv, named for LoadConfig's callers.
var Getenv = os.Getenv
