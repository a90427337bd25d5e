// Package promtest runs a real Prometheus server (Debian's prometheus
// binary) for tests and evaluates the Grafana dashboard's queries against it.
// The deploy tests use it on loopback, the VM tests inside a network
// namespace of the lab.
package promtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Job is the scrape job name the server uses: the dashboard's $job default.
const Job = "directord"

// Server is a running Prometheus.
type Server struct {
	cmd    *exec.Cmd
	base   string
	client *http.Client
	log    *os.File
	done   chan error
}

// Options configure Start.
type Options struct {
	// Dir holds the configuration, the TSDB and the log.
	Dir string
	// Targets are the host:port addresses to scrape every second.
	Targets []string
	// Listen is the server's own host:port.
	Listen string
	// Prefix runs the server through a wrapper (["ip", "netns", "exec", NS]).
	Prefix []string
	// Dial reaches Listen (a namespace's dialer); nil dials normally.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Start runs Prometheus and waits until it is ready.
func Start(opts Options) (*Server, error) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		return nil, fmt.Errorf("prometheus not installed (scripts/deps.sh installs it): %w", err)
	}
	var targets []string
	for _, t := range opts.Targets {
		targets = append(targets, fmt.Sprintf("%q", t))
	}
	cfg := fmt.Sprintf("global: { scrape_interval: 1s, evaluation_interval: 1s }\nscrape_configs:\n  - job_name: %s\n    static_configs: [ { targets: [%s] } ]\n",
		Job, strings.Join(targets, ", "))
	cfgPath := filepath.Join(opts.Dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(opts.Dir, "prometheus.log"))
	if err != nil {
		return nil, err
	}
	argv := append(append([]string{}, opts.Prefix...), bin, "--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(opts.Dir, "tsdb"), "--web.listen-address="+opts.Listen)
	s := &Server{cmd: exec.Command(argv[0], argv[1:]...), base: "http://" + opts.Listen, log: logf, done: make(chan error, 1)}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: opts.Dial}}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	if err := s.waitReady(60 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls /-/ready until the server answers 200 or exits.
func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("prometheus exited: %v (log: %s)", err, s.log.Name())
		default:
		}
		if resp, err := s.client.Get(s.base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("prometheus not ready after %s (log: %s)", timeout, s.log.Name())
}

// Stop kills the server (by its PID) and waits for it.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.done
	}
	s.log.Close()
}

// Query evaluates expr now and returns how many series or samples it gave.
// An expression Prometheus cannot parse or evaluate is an error.
func (s *Server) Query(expr string) (int, error) {
	resp, err := s.client.Get(s.base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return 0, fmt.Errorf("decode %q: %w", body, err)
	}
	if r.Status != "success" {
		return 0, errors.New(r.Error)
	}
	var series []json.RawMessage
	if err := json.Unmarshal(r.Data.Result, &series); err != nil {
		return 1, nil // a scalar or a string
	}
	return len(series), nil
}

// Panel is one dashboard query.
type Panel struct {
	// Title is the panel's title and RefID its query's letter.
	Title, RefID string
	// Expr is the PromQL with the dashboard variables substituted.
	Expr string
}

// DashboardQueries returns every query of every panel in a Grafana
// dashboard (rows' nested panels included) with $job, $instance and
// $__rate_interval substituted as Grafana would for all directors of the
// job. Variables it does not know stay and make the query fail.
func DashboardQueries(dashboard []byte) ([]Panel, error) {
	type panel struct {
		Title   string  `json:"title"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(dashboard, &d); err != nil {
		return nil, err
	}
	sub := strings.NewReplacer("$job", Job, "$instance", ".+", "$__rate_interval", "10s")
	var out []Panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, Panel{Title: p.Title, RefID: t.RefID, Expr: sub.Replace(t.Expr)})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out, nil
}
