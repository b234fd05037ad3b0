package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct{ head, want string }{
		{"POST /ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n", "abc"},
		{"POST /ingest HTTP/1.1\r\nauthorization:bearer   abc \r\n\r\n", "abc"},
		{"POST /ingest HTTP/1.1\r\nAUTHORIZATION: BEARER\tabc\r\nX: y\r\n\r\n", "abc"},
		{"POST /ingest HTTP/1.1\r\nAuthorization: Basic YWJj\r\n\r\n", ""},
		{"POST /ingest HTTP/1.1\r\nAuthorization: Bearer\r\n\r\n", ""},
		{"POST /ingest HTTP/1.1\r\nAuthorization: Bearerabc\r\n\r\n", ""},
		{"POST /ingest HTTP/1.1\r\nX-Authorization: Bearer abc\r\n\r\n", ""},
		{"POST /ingest HTTP/1.1\r\nHost: x\r\n\r\nAuthorization: Bearer abc\r\n\r\n", ""}, // in the body
	} {
		if got := string(bearerToken([]byte(tc.head))); got != tc.want {
			t.Errorf("%q: token %q, want %q", tc.head, got, tc.want)
		}
	}
}

// With INGEST_TOKENS (or a tokens file) /ingest wants a bearer token: none or a
// wrong one is 401 with WWW-Authenticate and the usual JSON error, counted under
// unauthorized; a listed one is accepted.
func TestIngestTokens(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("\n  from-file-1 \nfrom-file-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFakeAnalyzer(t, false)
	cfg, err := LoadConfig(nil, env(map[string]string{
		"ANALYZERS": f.url() + "=1", "INGEST_TOKENS": "alpha, beta", "INGEST_TOKENS_FILE": file,
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if dump := fmt.Sprintf("%v %+v %#v", cfg, cfg, cfg); strings.Contains(dump, "alpha") || strings.Contains(dump, "beta") {
		t.Fatalf("a dump of the configuration shows a token: %s", dump)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "tokens", cfg.IngestTokens)
	if strings.Contains(logged.String(), "alpha") {
		t.Fatalf("a log line shows a token: %s", logged.String())
	}
	srv := startDistributor(t, f.url()+"=1", func(c *Config) {
		c.IngestTokens, c.IngestTokensFile = cfg.IngestTokens, cfg.IngestTokensFile
	})
	post := func(auth string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", ingestURL(srv)+"/ingest", bytes.NewReader(packetBody("tok-"+auth, 1)))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp, b
	}
	refused := 0
	for _, auth := range []string{"", "Bearer wrong", "Bearer alph", "Bearer alphaa", "Basic YWxwaGE=", "Bearer from-file-3"} {
		resp, body := post(auth)
		var e struct {
			Error  string `json:"error"`
			Status int    `json:"status"`
		}
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "Bearer" || json.Unmarshal(body, &e) != nil || e.Status != 401 || e.Error == "" {
			t.Fatalf("Authorization %q: %d %v %s, want 401 with WWW-Authenticate: Bearer and a JSON error", auth, resp.StatusCode, resp.Header, body)
		}
		refused++
	}
	for _, auth := range []string{"Bearer alpha", "Bearer beta", "bearer from-file-1", "Bearer from-file-2"} {
		if resp, body := post(auth); resp.StatusCode != 202 {
			t.Fatalf("Authorization %q: %d %s, want 202", auth, resp.StatusCode, body)
		}
	}
	st := srv.Snapshot()
	if st.Rejected[rejectUnauthorized] != int64(refused) || st.Responses[statusIndex(401)] != int64(refused) || st.AcceptedPackets != 4 {
		t.Fatalf("unauthorized %d, 401s %d, accepted %d; want %d, %d, 4", st.Rejected[rejectUnauthorized], st.Responses[statusIndex(401)], st.AcceptedPackets, refused, refused)
	}
}

func TestIngestTokensFileErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	_ = os.WriteFile(empty, []byte("\n \n"), 0o600)
	for _, path := range []string{filepath.Join(t.TempDir(), "missing"), empty} {
		_, err := LoadConfig(nil, env(map[string]string{"ANALYZERS": "http://127.0.0.1:1=1", "INGEST_TOKENS_FILE": path}), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "INGEST_TOKENS_FILE") {
			t.Fatalf("%s: %v, want an error naming INGEST_TOKENS_FILE", path, err)
		}
	}
}
