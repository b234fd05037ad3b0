package proxy

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// ingestAuth is the optional bearer-token check of POST /ingest (INGEST_TOKENS,
// INGEST_TOKENS_FILE). It keeps only the tokens' SHA-256 digests: a presented
// token is hashed and compared with every digest in constant time, so neither
// which token matched nor how long the tokens are shows in the timing, and no
// token is kept in a form a log or a dump could print. Read-only after New; every
// loop uses it.
type ingestAuth struct {
	digests [][sha256.Size]byte
}

// newIngestAuth builds the check from the configured tokens; nil (no check) when
// there are none.
func newIngestAuth(cfg *Config) (*ingestAuth, error) {
	tokens := append([]string(nil), cfg.IngestTokens.list...)
	if cfg.IngestTokensFile != "" {
		more, err := readTokenFile(cfg.IngestTokensFile)
		if err != nil {
			return nil, err
		}
		tokens = append(tokens, more...)
	}
	if len(tokens) == 0 {
		return nil, nil
	}
	a := &ingestAuth{}
	for _, t := range tokens {
		a.digests = append(a.digests, sha256.Sum256([]byte(t)))
	}
	return a, nil
}

// readTokenFile reads one token per line; blank lines and surrounding spaces are
// ignored. Errors name the file, never its contents.
func readTokenFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &ConfigError{Name: "INGEST_TOKENS_FILE", Value: path, Problem: err.Error()}
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if t := strings.TrimSpace(line); t != "" {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, &ConfigError{Name: "INGEST_TOKENS_FILE", Value: path, Problem: "no tokens in the file"}
	}
	return out, nil
}

// allow reports whether the request whose head is head carries
// "Authorization: Bearer <token>" with a configured token. It does not allocate.
func (a *ingestAuth) allow(head []byte) bool {
	tok := bearerToken(head)
	if tok == nil {
		return false
	}
	d := sha256.Sum256(tok)
	ok := 0
	for i := range a.digests {
		ok |= subtle.ConstantTimeCompare(d[:], a.digests[i][:])
	}
	return ok == 1
}

// bearerToken is the token of the first Authorization field of a request head if
// its scheme is Bearer (case-insensitive), else nil. The head is well-formed (the
// parser accepted it): CRLF line ends, an empty line at its end.
func bearerToken(head []byte) []byte {
	i := bytes.Index(head, crlf)
	if i < 0 {
		return nil
	}
	for i += len(crlf); i < len(head); {
		end := bytes.Index(head[i:], crlf)
		if end <= 0 {
			return nil // the empty line: no Authorization field
		}
		line := head[i : i+end]
		i += end + len(crlf)
		colon := bytes.IndexByte(line, ':')
		if colon != len("authorization") || !asciiFold(line[:colon], "authorization") {
			continue
		}
		v := bytes.TrimLeft(line[colon+1:], " \t")
		if len(v) <= len("bearer ") || !asciiFold(v[:len("bearer")], "bearer") || (v[6] != ' ' && v[6] != '\t') {
			return nil
		}
		return bytes.Trim(v[7:], " \t")
	}
	return nil
}

var crlf = []byte("\r\n")

// asciiFold compares b with lower, a lower-case ASCII word, ignoring case.
func asciiFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// Secrets is a list of tokens from the configuration. It prints as a count, never
// the tokens, so a dump of the Config (%v, %+v, slog) cannot leak them.
type Secrets struct{ list []string }

func (s Secrets) String() string   { return "[" + strconv.Itoa(len(s.list)) + " redacted]" }
func (s Secrets) GoString() string { return s.String() }

// LogValue keeps the tokens out of structured logs too.
func (s Secrets) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Len is how many tokens there are.
func (s Secrets) Len() int { return len(s.list) }

// parseTokens reads INGEST_TOKENS: a comma list; blanks around items are ignored.
func parseTokens(v string) (Secrets, error) {
	var s Secrets
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			s.list = append(s.list, t)
		}
	}
	if len(s.list) == 0 && strings.TrimSpace(v) != "" {
		return s, errors.New("no tokens in the list")
	}
	return s, nil
}
