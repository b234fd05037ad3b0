package bench

import (
	"embed"
	"fmt"
	"math"
	"strings"
	"text/template"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.ParseFS(templateFS, "templates/*.tmpl"))

// WrkScript renders the wrk Lua script that posts p with a fresh packet_id per
// request. The packet is put into Lua long strings, which take it byte for byte.
func WrkScript(p Packet) (string, error) {
	for _, s := range []string{p.Head, p.Tail} {
		if strings.Contains(s, "]==]") {
			return "", fmt.Errorf("packet text contains the Lua long-string close \"]==]\"")
		}
	}
	var b strings.Builder
	if err := templates.ExecuteTemplate(&b, "wrk-ingest.lua.tmpl", p); err != nil {
		return "", fmt.Errorf("render wrk script: %w", err)
	}
	return b.String(), nil
}

// NginxUpstream is one analyzer behind nginx.
type NginxUpstream struct {
	Addr   string // host:port
	Weight int
}

// NginxConfig is what the nginx peer is rendered from.
type NginxConfig struct {
	Dir       string // prefix: configuration, pid, logs and temp paths
	Listen    string // host:port
	Workers   int
	Upstreams []NginxUpstream
}

// Render returns nginx.conf.
func (c NginxConfig) Render() (string, error) {
	if c.Dir == "" || c.Listen == "" || c.Workers < 1 || len(c.Upstreams) == 0 {
		return "", fmt.Errorf("nginx config needs a dir, a listen address, workers and upstreams: %+v", c)
	}
	var b strings.Builder
	if err := templates.ExecuteTemplate(&b, "nginx.conf.tmpl", c); err != nil {
		return "", fmt.Errorf("render nginx.conf: %w", err)
	}
	return b.String(), nil
}

// NginxWeights turns the distributor's fractional weights into nginx's integer
// ones in the same proportions: the lightest weight times the smallest k ≤ 1000
// that makes every weight whole (0.5/0.3/0.2 → 5/3/2), else each weight rounded
// after scaling the lightest to 1000.
func NginxWeights(ws []float64) ([]int, error) {
	for _, w := range ws {
		if !(w > 0) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("weight %v: want a positive number", w)
		}
	}
	minW := math.Inf(1)
	for _, w := range ws {
		minW = math.Min(minW, w)
	}
	scaled := func(k float64) ([]int, bool) {
		out := make([]int, len(ws))
		exact := true
		for i, w := range ws {
			x := w / minW * k
			r := math.Round(x)
			if math.Abs(x-r) > 1e-9*math.Max(1, x) {
				exact = false
			}
			out[i] = max(1, int(r))
		}
		return out, exact
	}
	for k := 1.0; k <= 1000; k++ {
		if out, exact := scaled(k); exact {
			return out, nil
		}
	}
	out, _ := scaled(1000)
	return out, nil
}
