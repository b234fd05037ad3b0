package proxy

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// A page on http://evil.example:9090 whose name is rebound to 127.0.0.1 is
// same-origin to the browser: it reaches the admin API from a loopback peer with
// Origin and Host both evil.example:9090. Without ADMIN_TOKEN that must be refused;
// a local client naming a loopback address or localhost is not.
func TestAdminRefusesDNSRebinding(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Analyzers, _ = ParseAnalyzers("http://analyzer-1:1=0.5,http://analyzer-2:1=0.5")
	srv, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		want int
	}{
		{"evil.example:9090", 403},
		{"localhost:9100", 201},
		{"127.0.0.1:9100", 409}, // the same URL again: past the check, refused as taken
		{"[::1]:9100", 409},
	} {
		r := httptest.NewRequest("POST", "http://"+tc.host+"/admin/analyzers", strings.NewReader(`{"url":"http://203.0.113.9:80","weight":1,"name":"x"}`))
		r.RemoteAddr = "127.0.0.1:5555"
		r.Header.Set("Origin", "http://"+tc.host)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		srv.adminHandler().ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("Host %s from a loopback peer: %d %s, want %d", tc.host, w.Code, w.Body, tc.want)
		}
	}
}
