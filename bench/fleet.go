package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// proc is a server process the harness started and stops.
type proc struct {
	name    string
	cmd     *exec.Cmd
	line    string // the command as one would type it, environment first
	logPath string
	exited  chan struct{}
	waitErr error
}

// startProc starts bin with args and env (added to the harness's environment),
// output to <dir>/<name>.log. The process is killed if the harness dies.
func startProc(dir, name string, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{
		name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{}),
		line: strings.TrimSpace(strings.Join(env, " ") + " " + strings.Join(append([]string{bin}, args...), " ")),
	}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// pids is the process and its children (nginx's workers).
func (p *proc) pids() ([]int, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	kids, err := childrenOf(p.pid())
	if err != nil {
		return nil, err
	}
	return append([]int{p.pid()}, kids...), nil
}

// check reports a process that has exited, with the end of its log.
func (p *proc) check() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v); last log lines:\n%s", p.name, p.waitErr, tail(p.logPath, 10))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits, then SIGKILL.
func (p *proc) stop(timeout time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// httpClient is for the harness's own small requests (readiness, counters).
var httpClient = &http.Client{Timeout: 5 * time.Second}

// getJSON fetches url and decodes its JSON body into v, which must come with 200.
func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// waitReady polls url until ready accepts its JSON answer, p exits, or timeout.
func waitReady(ctx context.Context, p *proc, url string, timeout time.Duration, ready func(json.RawMessage) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if err := p.check(); err != nil {
			return err
		}
		var body json.RawMessage
		last = getJSON(ctx, url, &body)
		if last == nil && ready != nil {
			last = ready(body)
		}
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %w; last log lines:\n%s", p.name, timeout, last, tail(p.logPath, 10))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// portsFree fails when any of the ports is taken, so a run never measures a
// stranger's server.
func portsFree(ports ...int) error {
	var busy []string
	for _, port := range ports {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			busy = append(busy, fmt.Sprint(port))
			continue
		}
		ln.Close()
	}
	if len(busy) > 0 {
		return errors.New("ports in use: " + strings.Join(busy, ", ") + " (set BENCH_PORT_BASE)")
	}
	return nil
}
