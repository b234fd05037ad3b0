package proxy

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"github.com/sluicelog/sluice/cli"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// redacted is what every rendering of a Secret prints.
const redacted = cli.Redacted

// Secret is a value that must never reach a log, a dump, a page or an error: every
// way of printing it (fmt verbs, slog, JSON, text marshalling) gives "[redacted]".
// Only Matches looks at the value.
type Secret struct{ v string }

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// IsSet reports whether there is a value.
func (s Secret) IsSet() bool { return s.v != "" }

// Matches compares given with the value in constant time (digests of equal length,
// so not even the value's length leaks).
func (s Secret) Matches(given string) bool {
	want, got := sha256.Sum256([]byte(s.v)), sha256.Sum256([]byte(given))
	return s.IsSet() && subtle.ConstantTimeCompare(want[:], got[:]) == 1
}

// trimNewline drops the line end a file or $(cat file) leaves after a token.
func trimNewline(v string) string { return strings.TrimRight(v, "\r\n") }

// adminTokenSetting is ADMIN_TOKEN. It never fails: a failing setting's value is
// printed in the configuration error, and this one must never be printed.
func adminTokenSetting(c *Config, v string) error {
	c.AdminToken = Secret{v: trimNewline(v)}
	return nil
}

// adminTokenFileSetting is ADMIN_TOKEN_FILE; LoadConfig reads the file once all
// settings are in (resolveAdminToken).
func adminTokenFileSetting(c *Config, path string) error {
	c.AdminTokenFile = path
	return nil
}

// resolveAdminToken reads ADMIN_TOKEN_FILE into AdminToken. A file that cannot be
// read or holds nothing stops the start, and so does ADMIN_TOKEN set as well:
// which one was meant is a guess sluice does not make.
func (c *Config) resolveAdminToken() error {
	if c.AdminTokenFile == "" {
		return nil
	}
	if c.AdminToken.IsSet() {
		return &ConfigError{Name: "ADMIN_TOKEN_FILE", Value: c.AdminTokenFile, Problem: "ADMIN_TOKEN is set too; set one of them"}
	}
	b, err := os.ReadFile(c.AdminTokenFile)
	if err != nil {
		return &ConfigError{Name: "ADMIN_TOKEN_FILE", Value: c.AdminTokenFile, Problem: "cannot read the admin token: " + err.Error()}
	}
	if c.AdminToken = (Secret{v: trimNewline(string(b))}); !c.AdminToken.IsSet() {
		return &ConfigError{Name: "ADMIN_TOKEN_FILE", Value: c.AdminTokenFile, Problem: "the admin token file is empty"}
	}
	return nil
}

// addrSetting parses a listen address: host:port or :port, or "" (the setting's
// "off" or "default").
func addrSetting(f func(*Config, string)) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v != "" {
			_, port, err := net.SplitHostPort(v)
			if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
				return errors.New("want host:port or :port")
			}
		}
		f(c, v)
		return nil
	}
}

// IngestAddr is the address the ingest listener binds: LISTEN_ADDR when set, else
// every interface on PORT.
func (c *Config) IngestAddr() string {
	if c.ListenAddr != "" {
		return c.ListenAddr
	}
	return net.JoinHostPort("", strconv.Itoa(c.Port))
}

// errorJSON is the one error body of every port: {"error":"<reason>","status":<code>},
// the shape codec.AppendError writes on the ingest port.
type errorJSON struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

// writeError is the admin listener's only error writer.
func writeError(w http.ResponseWriter, status int, reason string) {
	writeJSON(w, status, errorJSON{Error: reason, Status: status})
}

// authorize decides whether r may use a closed admin route: with ADMIN_TOKEN, only
// with "Authorization: Bearer <token>"; without, only from a loopback peer. It
// answers the refusal itself and reports whether to go on.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.AdminToken.IsSet() {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if strings.EqualFold(scheme, "Bearer") && s.cfg.AdminToken.Matches(strings.TrimSpace(tok)) {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice admin"`)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token")
		return false
	}
	if !isLoopbackPeer(r.RemoteAddr) {
		writeError(w, http.StatusForbidden, "the admin API answers loopback clients only; set ADMIN_TOKEN to allow others")
		return false
	}
	// A loopback peer may still be a browser running a page from another site whose
	// name now points at 127.0.0.1 (DNS rebinding): to the browser that page is
	// same-origin, and it sends its own name as Host and Origin. A local client
	// names a loopback address or localhost.
	if !isLoopbackHost(r.Host) {
		writeError(w, http.StatusForbidden, "the admin API answers requests for a loopback address or localhost only; set ADMIN_TOKEN to allow others")
		return false
	}
	return true
}

// isLoopbackHost reports whether a Host header names a loopback IP or localhost.
func isLoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isLoopbackPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// sameSiteJSON refuses what a browser could send from another site: a mutation whose
// Origin is not the admin's own, or whose body is not JSON (a form post, which
// needs no CORS preflight). It answers the refusal itself.
func sameSiteJSON(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	own := "http://" + r.Host
	if r.TLS != nil {
		own = "https://" + r.Host
	}
	if o := r.Header.Get("Origin"); o != "" && !strings.EqualFold(o, own) {
		writeError(w, http.StatusForbidden, "cross-origin request refused")
		return false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "want Content-Type: application/json")
		return false
	}
	return true
}

// adminAccess says in the start-up log who may use the closed admin routes.
func adminAccess(c *Config) string {
	if c.AdminToken.IsSet() {
		return "bearer token"
	}
	return "loopback peers only"
}
