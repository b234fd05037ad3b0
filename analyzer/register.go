package analyzer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Registration announces an analyzer to a distributor's admin API: POST
// /admin/analyzers on start, DELETE /admin/analyzers/{name} on stop
// (docs/analyzer.md, "Self-registration").
type Registration struct {
	Admin     string  // the distributor's admin base URL, e.g. http://distributor:9100
	Token     string  // sent as "Authorization: Bearer <Token>" when not empty; never logged
	Name      string  // the name to register under
	Weight    float64 // the weight to register with
	Advertise string  // the URL the distributor reaches this analyzer at

	Client     *http.Client  // nil: a client with a 5 s timeout per request
	Log        *slog.Logger  // nil: slog.Default()
	BackoffMin time.Duration // first wait after a failed attempt; 0: 100 ms
	BackoffMax time.Duration // longest wait between attempts; 0: 5 s
}

// DeregisterTimeout bounds the deregistration on shutdown; the listener closes
// after it either way.
const DeregisterTimeout = 5 * time.Second

// RegisterError is the distributor refusing the registration for good: a 4xx
// answer other than 409. It is not retried.
type RegisterError struct {
	Status int
	Body   string
}

func (e *RegisterError) Error() string {
	return fmt.Sprintf("distributor refused the registration: %d %s: %s",
		e.Status, http.StatusText(e.Status), strings.TrimSpace(e.Body))
}

// Register posts the registration until the distributor takes it, so an analyzer
// can start before its distributor. Connection errors, 5xx and 429 are retried
// with exponential backoff (BackoffMin doubling up to BackoffMax), each logged. A
// 409 (the name is registered already, e.g. by this analyzer before a crash) is
// taken as registered. Another 4xx ends it with a *RegisterError; ctx ending ends
// it with ctx's error.
func (r *Registration) Register(ctx context.Context) error {
	body, err := json.Marshal(struct {
		URL    string  `json:"url"`
		Weight float64 `json:"weight"`
		Name   string  `json:"name,omitempty"`
	}{r.Advertise, r.Weight, r.Name})
	if err != nil {
		return err
	}
	wait := r.backoffMin()
	for attempt := 1; ; attempt++ {
		status, answer, err := r.do(ctx, http.MethodPost, r.base()+"/admin/analyzers", body)
		switch {
		case err == nil && status/100 == 2:
			r.log().Info("registered with the distributor", "admin", r.Admin, "name", r.Name, "url", r.Advertise, "weight", r.Weight)
			return nil
		case err == nil && status == http.StatusConflict:
			r.log().Warn("the distributor has an analyzer of this name already; taking it as this one", "admin", r.Admin, "name", r.Name)
			return nil
		case err == nil && status/100 == 4 && status != http.StatusTooManyRequests:
			return &RegisterError{status, answer}
		case ctx.Err() != nil:
			return ctx.Err()
		}
		if err == nil {
			err = fmt.Errorf("%d %s", status, http.StatusText(status))
		}
		r.log().Warn("registration failed; retrying", "admin", r.Admin, "attempt", attempt, "retry_in", wait.String(), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, r.backoffMax())
	}
}

// Deregister deletes the registration once, within ctx. A 404 (the distributor
// forgot it, or restarted) counts as done.
func (r *Registration) Deregister(ctx context.Context) error {
	status, answer, err := r.do(ctx, http.MethodDelete, r.base()+"/admin/analyzers/"+url.PathEscape(r.Name), nil)
	switch {
	case err != nil:
		return fmt.Errorf("deregister from %s: %w", r.Admin, err)
	case status/100 != 2 && status != http.StatusNotFound:
		return fmt.Errorf("deregister from %s: %d %s: %s", r.Admin, status, http.StatusText(status), strings.TrimSpace(answer))
	}
	r.log().Info("deregistered from the distributor", "admin", r.Admin, "name", r.Name)
	return nil
}

// do sends one request and returns the status and the start of the answer's body.
func (r *Registration) do(ctx context.Context, method, target string, body []byte) (int, string, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	client := r.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, string(answer), nil
}

func (r *Registration) base() string { return strings.TrimRight(r.Admin, "/") }

func (r *Registration) log() *slog.Logger {
	if r.Log == nil {
		return slog.Default()
	}
	return r.Log
}

func (r *Registration) backoffMin() time.Duration {
	if r.BackoffMin <= 0 {
		return 100 * time.Millisecond
	}
	return r.BackoffMin
}

func (r *Registration) backoffMax() time.Duration {
	if r.BackoffMax <= 0 {
		return 5 * time.Second
	}
	return max(r.BackoffMax, r.backoffMin())
}
