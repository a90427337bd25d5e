// Package traffic generates the lab's client traffic and reports what
// happened to it: HTTP requests through the VIP at a bounded rate (each on a
// new connection, so each is scheduled afresh) and long-lived TCP echo
// connections that must stay unbroken while directors come and go. The lab
// program labclient runs it inside the client node; the end-to-end tests
// and the demo decode its results.
package traffic

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// ResultPrefix starts the line that carries a run's JSON result.
const ResultPrefix = "RESULT "

// ReadyPrefix starts the line Hold prints once its connections are open.
const ReadyPrefix = "READY "

// maxEvents bounds the failures and breaks kept in a result.
const maxEvents = 2000

// HTTPOptions describe a request run.
type HTTPOptions struct {
	URL string
	// Requests to send (0: until Duration or the context ends).
	Requests int
	// Rate in requests per second (must be positive).
	Rate float64
	// Duration bounds the run (0: until Requests or the context ends).
	Duration time.Duration
	// Timeout of one request, connect to last byte.
	Timeout time.Duration
	// Concurrency bounds requests in flight (default 32).
	Concurrency int
	// Progress, if set, gets one line per ProgressEvery with the counts.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// HTTPResult is what a request run saw.
type HTTPResult struct {
	Sent, OK, Failed int
	// ByServer counts successful answers per real server (X-Real-Server).
	ByServer map[string]int
	// Failures are the first failures, in time order.
	Failures []Event
	Start    time.Time
	End      time.Time
}

// Event is a failed request or a broken connection.
type Event struct {
	// At is when the failure was seen; Started, for a request, is when it
	// was sent.
	At      time.Time
	Started time.Time `json:",omitzero"`
	Server  string    `json:",omitempty"`
	Err     string
}

// FailedBetween counts failures seen in [from, to).
func (r HTTPResult) FailedBetween(from, to time.Time) int {
	return countBetween(r.Failures, from, to)
}

// FailedStartedAfter counts failed requests that were sent at or after t.
func (r HTTPResult) FailedStartedAfter(t time.Time) int {
	n := 0
	for _, e := range r.Failures {
		if !e.Started.Before(t) {
			n++
		}
	}
	return n
}

func countBetween(evs []Event, from, to time.Time) int {
	n := 0
	for _, e := range evs {
		if !e.At.Before(from) && e.At.Before(to) {
			n++
		}
	}
	return n
}

// HTTP sends requests at a steady rate until Requests are sent, Duration
// passes or ctx ends, then waits for those in flight.
func HTTP(ctx context.Context, o HTTPOptions) (HTTPResult, error) {
	if o.Rate <= 0 || o.URL == "" {
		return HTTPResult{}, fmt.Errorf("http run needs a URL and a positive rate")
	}
	if o.Requests <= 0 && o.Duration <= 0 && ctx.Done() == nil {
		return HTTPResult{}, fmt.Errorf("http run needs a request count, a duration or a cancellable context")
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	client := &http.Client{
		Timeout: o.Timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true, // every request is a new flow
			Proxy:             nil,
		},
	}
	res := HTTPResult{ByServer: map[string]int{}, Start: time.Now()}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.Concurrency)
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
	defer tick.Stop()
	var progress <-chan time.Time
	if o.Progress != nil && o.ProgressEvery > 0 {
		pt := time.NewTicker(o.ProgressEvery)
		defer pt.Stop()
		progress = pt.C
	}
	last := HTTPResult{ByServer: map[string]int{}}
loop:
	for o.Requests <= 0 || res.Sent < o.Requests {
		select {
		case <-ctx.Done():
			break loop
		case <-progress:
			mu.Lock()
			fmt.Fprintln(o.Progress, progressLine(time.Since(res.Start), res, last))
			last = HTTPResult{OK: res.OK, Failed: res.Failed, ByServer: clone(res.ByServer)}
			mu.Unlock()
			continue
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		mu.Lock()
		res.Sent++
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			started := time.Now()
			server, err := get(client, o.URL)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
				if len(res.Failures) < maxEvents {
					res.Failures = append(res.Failures, Event{At: time.Now(), Started: started, Err: err.Error()})
				}
				return
			}
			res.OK++
			res.ByServer[server]++
		}()
	}
	wg.Wait()
	res.End = time.Now()
	sort.Slice(res.Failures, func(i, j int) bool { return res.Failures[i].At.Before(res.Failures[j].At) })
	return res, nil
}

// get does one request and returns the real server that answered.
func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	server := resp.Header.Get("X-Real-Server")
	if server == "" || strings.TrimSpace(string(body)) != server {
		return "", fmt.Errorf("answer without a consistent real server name: header %q body %q", server, body)
	}
	return server, nil
}

func clone(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// progressLine prints the counts since the previous line.
func progressLine(at time.Duration, now, prev HTTPResult) string {
	var names []string
	for k := range now.ByServer {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "t=%4.1fs ok=%d failed=%d", at.Seconds(), now.OK-prev.OK, now.Failed-prev.Failed)
	for _, n := range names {
		fmt.Fprintf(&b, " %s=%d", n, now.ByServer[n]-prev.ByServer[n])
	}
	return b.String()
}

// HoldOptions describe a set of long-lived echo connections.
type HoldOptions struct {
	Addr  string
	Conns int
	// Interval between pings on one connection (each starts at a random
	// phase); Timeout is how long an echo may take before the connection
	// counts as broken.
	Interval, Timeout time.Duration
	// Ready is called once every connection has been tried.
	Ready func(opened, failed int)
}

// HoldResult is what happened to the connections.
type HoldResult struct {
	// Opened and OpenFailed count the connections after every attempt;
	// OpenRetried those that opened only at a second or third attempt.
	Opened, OpenFailed, OpenRetried int
	// Broken connections got an error or no echo within the timeout; Alive
	// were still fine at the end.
	Broken, Alive int
	// Pings answered in total.
	Pings int64
	// ByServer counts opened connections per real server (its greeting).
	ByServer map[string]int
	Breaks   []Event
	Start    time.Time
	End      time.Time
}

// BrokenBetween counts breaks in [from, to).
func (r HoldResult) BrokenBetween(from, to time.Time) int {
	return countBetween(r.Breaks, from, to)
}

// Hold opens the connections (at most 16 dials at a time), pings each one
// every Interval until ctx ends, and reports which broke.
func Hold(ctx context.Context, o HoldOptions) (HoldResult, error) {
	if o.Conns <= 0 || o.Addr == "" {
		return HoldResult{}, fmt.Errorf("hold needs an address and a positive connection count")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	res := HoldResult{ByServer: map[string]int{}, Start: time.Now()}
	var mu sync.Mutex
	type conn struct {
		c      net.Conn
		r      *bufio.Reader
		server string
	}
	conns := make([]*conn, o.Conns)
	dialSem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dialSem <- struct{}{}
			defer func() { <-dialSem }()
			// What Hold measures is whether open connections break, so a
			// connection that could not be opened (a SYN lost while an
			// emulated lab is busy) is tried again, up to openAttempts.
			for attempt := 1; attempt <= openAttempts && ctx.Err() == nil; attempt++ {
				c, r, greet, err := openOne(ctx, o)
				if err == nil {
					conns[i] = &conn{c: c, r: r, server: greet}
					if attempt > 1 {
						mu.Lock()
						res.OpenRetried++
						mu.Unlock()
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		if c == nil {
			res.OpenFailed++
			continue
		}
		res.Opened++
		res.ByServer[c.server]++
	}
	if o.Ready != nil {
		o.Ready(res.Opened, res.OpenFailed)
	}
	for i, c := range conns {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.c.Close()
			rnd := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			wait := time.Duration(rnd.Int64N(int64(o.Interval)))
			for seq := 0; ; seq++ {
				select {
				case <-ctx.Done():
					mu.Lock()
					res.Alive++
					mu.Unlock()
					return
				case <-time.After(wait):
				}
				wait = o.Interval
				err := ping(c.c, c.r, seq, o.Timeout)
				if err != nil && ctx.Err() != nil {
					mu.Lock()
					res.Alive++ // the run ended during this ping
					mu.Unlock()
					return
				}
				mu.Lock()
				if err != nil {
					res.Broken++
					if len(res.Breaks) < maxEvents {
						res.Breaks = append(res.Breaks, Event{At: time.Now(), Server: c.server, Err: err.Error()})
					}
					mu.Unlock()
					return
				}
				res.Pings++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.End = time.Now()
	sort.Slice(res.Breaks, func(i, j int) bool { return res.Breaks[i].At.Before(res.Breaks[j].At) })
	return res, nil
}

// openAttempts is how often Hold tries to open each connection.
const openAttempts = 3

// openOne dials o.Addr and reads the server's greeting (its name).
func openOne(ctx context.Context, o HoldOptions) (net.Conn, *bufio.Reader, string, error) {
	d := net.Dialer{Timeout: o.Timeout}
	c, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, nil, "", err
	}
	c.SetReadDeadline(time.Now().Add(o.Timeout))
	r := bufio.NewReader(c)
	greet, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, nil, "", err
	}
	return c, r, strings.TrimSpace(greet), nil
}

// ping sends one line and waits for its echo.
func ping(c net.Conn, r *bufio.Reader, seq int, timeout time.Duration) error {
	msg := fmt.Sprintf("ping %d\n", seq)
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if line != msg {
		return fmt.Errorf("echo %q for %q", line, msg)
	}
	return nil
}

// FormatResult renders a result as its ResultPrefix line.
func FormatResult(v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	return ResultPrefix + string(data), nil
}

// ParseResult finds the ResultPrefix line in a program's output and decodes it.
func ParseResult(out string, v any) error {
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, ResultPrefix); ok {
			if err := json.Unmarshal([]byte(rest), v); err != nil {
				return fmt.Errorf("decode result: %w", err)
			}
			return nil
		}
	}
	return fmt.Errorf("no %q line in the output:\n%s", strings.TrimSpace(ResultPrefix), out)
}
