package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"github.com/sluicelog/sluice/cli"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// The configuration file (CONFIG_FILE / --config) is YAML whose keys are the
// settings' environment names in lower case. Every value goes through the same
// setter as the environment variable and the flag: a YAML scalar is turned into its
// string form and fed to it, so a setting has one parser whatever its source.
// "analyzers" may also be a list of {url, weight, name}; it is joined into the
// ANALYZERS form and parsed by ParseAnalyzers, then the given names are applied.
//
// Precedence: flag > environment > file > default.

// FileError is a problem in the configuration file: which file, which key, what.
type FileError struct {
	File, Key, Value, Problem string
}

func (e *FileError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("config file %s: %s", e.File, e.Problem)
	}
	return fmt.Sprintf("config file %s: %s=%q: %s", e.File, e.Key, cli.Redact(e.Key, e.Value), e.Problem)
}

// ConfigErrors is every problem LoadConfig found, in the order of the layers
// (file, environment, flags); errors.As finds any one of them.
type ConfigErrors []error

func (e ConfigErrors) Error() string {
	lines := make([]string, len(e))
	for i, err := range e {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

func (e ConfigErrors) Unwrap() []error { return e }

// configErr is nil for no problems, the problem itself for one, ConfigErrors for more.
func configErr(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return ConfigErrors(errs)
}

// Problems lists the problems in a LoadConfig error, one per entry.
func Problems(err error) []error {
	var many ConfigErrors
	if errors.As(err, &many) {
		return many
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// printProblems writes one line per problem, each naming its source.
func printProblems(w io.Writer, err error) {
	for _, p := range Problems(err) {
		fmt.Fprintln(w, "sluice distributor: bad configuration:", p)
	}
}

// failConfig is a bad configuration at start: one line (with a hint to -h) for
// one problem, one line per problem and the hint last for several. It returns the
// exit status, cli.ExitUsage.
func failConfig(w io.Writer, err error) int {
	probs := Problems(err)
	for _, p := range probs[:len(probs)-1] {
		fmt.Fprintln(w, "sluice distributor:", p)
	}
	return cli.Fail(w, "sluice distributor", probs[len(probs)-1])
}

// apply runs one setting's setter and records the value as written, for
// GET /admin/config and reload's comparison. A secret is recorded only as a
// fingerprint: %+v of a Config prints the unexported raw map entry by entry, past
// any String method, and reload only needs to know whether a secret changed.
func (c *Config) apply(s setting, v string) error {
	if err := s.set(c, v); err != nil {
		return err
	}
	if c.raw == nil {
		c.raw = map[string]string{}
	}
	if v != "" && cli.SecretName(s.env) {
		sum := sha256.Sum256([]byte(v))
		v = "sha256:" + hex.EncodeToString(sum[:8])
	}
	c.raw[s.env] = v
	return nil
}

// preParse reads --config and --check from args before the layers are applied,
// with a throwaway FlagSet of the same flags as LoadConfig's (values are not
// checked here: LoadConfig's own parse reports every problem).
func preParse(args []string) (configFile string, check bool) {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, s := range settings() {
		s := s
		fs.Func(s.flag, "", func(v string) error {
			if s.env == "CONFIG_FILE" {
				configFile = v
			}
			return nil
		})
	}
	fs.BoolVar(&check, "check", false, "")
	_ = fs.Parse(args)
	return configFile, check
}

// configFilePath is --config, else CONFIG_FILE.
func configFilePath(args []string, lookup func(string) (string, bool)) string {
	if p, _ := preParse(args); p != "" {
		return p
	}
	v, _ := lookup("CONFIG_FILE")
	return v
}

// analyzerName's rule for a name given in the file: it becomes a metric label and
// a URL path segment.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// applyConfigFile loads path (nothing when empty) onto c and returns every problem.
func applyConfigFile(c *Config, path string, all []setting) []error {
	if path == "" {
		return nil
	}
	k := koanf.New("\x00") // keys are flat names; no nesting by delimiter
	if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
		return []error{&FileError{File: path, Problem: err.Error()}}
	}
	byKey := map[string]setting{}
	for _, s := range all {
		byKey[strings.ToLower(s.env)] = s
	}
	raw := k.Raw()
	keys := make([]string, 0, len(raw))
	for key := range raw {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	var errs []error
	for _, key := range keys {
		val := raw[key]
		s, ok := byKey[key]
		switch {
		case !ok:
			errs = append(errs, &FileError{File: path, Key: key, Value: fmt.Sprint(val), Problem: "unknown key (keys are the environment variables' names in lower case: port, analyzers, metrics_addr, ...)"})
			continue
		case s.env == "CONFIG_FILE":
			errs = append(errs, &FileError{File: path, Key: key, Value: fmt.Sprint(val), Problem: "cannot be set inside the config file"})
			continue
		case s.env == "ANALYZERS":
			if list, isList := val.([]any); isList {
				errs = append(errs, applyAnalyzerList(c, path, s, list)...)
				continue
			}
		}
		v, err := scalarString(val)
		if err == nil {
			err = c.apply(s, v)
		}
		if err != nil {
			errs = append(errs, &FileError{File: path, Key: key, Value: v, Problem: err.Error()})
		}
	}
	return errs
}

// scalarString is a YAML scalar's string form, as it would be written in the
// environment. An empty value (key: or key: "") is "".
func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case []any, map[string]any:
		return "", errors.New("want a single value, not a list or map")
	}
	return fmt.Sprint(v), nil
}

// applyAnalyzerList turns analyzers: [{url, weight, name}, ...] into the ANALYZERS
// form, parses it with the ANALYZERS setter and then applies the given names.
func applyAnalyzerList(c *Config, path string, s setting, list []any) []error {
	var errs []error
	bad := func(i int, value, problem string) {
		errs = append(errs, &FileError{File: path, Key: "analyzers[" + strconv.Itoa(i) + "]", Value: value, Problem: problem})
	}
	items := make([]string, 0, len(list))
	names := make([]string, len(list))
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			bad(i, fmt.Sprint(item), "want a map with url, weight and optionally name")
			continue
		}
		var url, weight string
		for _, field := range sortedKeys(m) {
			v, err := scalarString(m[field])
			switch {
			case err != nil:
				bad(i, fmt.Sprint(m[field]), field+": "+err.Error())
			case field == "url":
				url = v
			case field == "weight":
				weight = v
			case field == "name":
				names[i] = v
				if !nameRE.MatchString(v) {
					bad(i, v, "name: want 1 to 64 letters, digits, '.', '_' or '-'")
				}
			default:
				bad(i, field, "unknown field (want url, weight, name)")
			}
		}
		switch {
		case url == "":
			bad(i, fmt.Sprint(item), "url is required")
		case weight == "":
			bad(i, fmt.Sprint(item), "weight is required")
		case strings.Contains(url, ","):
			bad(i, url, "url: must not contain ','")
		}
		items = append(items, url+"="+weight)
	}
	if len(errs) > 0 {
		return errs
	}
	joined := strings.Join(items, ",")
	if err := c.apply(s, joined); err != nil {
		return []error{&FileError{File: path, Key: "analyzers", Value: joined, Problem: err.Error()}}
	}
	for i, n := range names {
		if n != "" {
			c.Analyzers[i].Name = n
		}
	}
	seen := map[string]int{}
	for i, a := range c.Analyzers {
		if j, dup := seen[a.Name]; dup {
			bad(i, a.Name, fmt.Sprintf("name: already the name of analyzers[%d]", j))
		}
		seen[a.Name] = i
	}
	return errs
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// namesAnalyzers reports whether a problem already concerns the analyzers, so
// "at least one analyzer is required" is not said twice.
func namesAnalyzers(errs []error) bool {
	for _, err := range errs {
		var ce *ConfigError
		var fe *FileError
		switch {
		case errors.As(err, &ce) && (ce.Name == "ANALYZERS" || ce.Name == "-analyzers"):
			return true
		case errors.As(err, &fe) && strings.HasPrefix(fe.Key, "analyzers"):
			return true
		}
	}
	return false
}

// Check is `sluice distributor --check`: it reports the configuration that
// LoadConfig produced (cfg, err) without serving or binding any port. OK is one
// line on stdout and status 0; otherwise every problem, one per line, on stderr
// and status 2.
func Check(cfg Config, err error, stdout, stderr io.Writer) int {
	if err != nil {
		printProblems(stderr, err)
		return 2
	}
	var an []string
	for _, a := range cfg.Analyzers {
		an = append(an, a.Name+"="+strconv.FormatFloat(a.Weight, 'f', -1, 64))
	}
	file := cfg.ConfigFile
	if file == "" {
		file = "none"
	}
	metricsAddr := cfg.MetricsAddr
	if metricsAddr == "" {
		metricsAddr = "off"
	}
	dns := ""
	if cfg.AnalyzersDNS != "" {
		dns = "; and those of DNS " + cfg.AnalyzersDNS
	}
	fmt.Fprintf(stdout, "sluice distributor: configuration OK: file %s; port %d; metrics %s; loops %d; %d analyzers: %s%s\n",
		file, cfg.Port, metricsAddr, cfg.Loops, len(cfg.Analyzers), strings.Join(an, " "), dns)
	return 0
}
