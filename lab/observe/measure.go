package observe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/anycast-director/director/lab/runner"
	"github.com/anycast-director/director/lab/traffic"
)

// Traffic is the client traffic a measurement runs: the long-lived echo
// connections and the request stream of the director-loss scenarios.
type Traffic struct {
	// Node is the client node; Program the labclient command in it
	// (default "labclient").
	Node, Program string
	// URL gets requests at Rate per second (default 20), each on a new
	// connection; empty: no requests.
	URL  string
	Rate float64
	// Echo ("addr:port") gets Conns long-lived connections (default 200),
	// each pinged every second; one whose echo takes longer than
	// EchoTimeout (default 5 s) counts as broken. Empty: no connections.
	Echo        string
	Conns       int
	EchoTimeout time.Duration
	// Before is how long traffic flows before the action (default 2 s:
	// every connection pings at least once); Settle how long it flows
	// after (default EchoTimeout + 2 s: every connection pings and, if its
	// packets went nowhere, times out).
	Before, Settle time.Duration
}

func (tr Traffic) withDefaults() Traffic {
	if tr.Program == "" {
		tr.Program = "labclient"
	}
	if tr.Rate <= 0 {
		tr.Rate = 20
	}
	if tr.Conns <= 0 {
		tr.Conns = 200
	}
	if tr.EchoTimeout <= 0 {
		tr.EchoTimeout = 5 * time.Second
	}
	if tr.Before <= 0 {
		tr.Before = 2 * time.Second
	}
	if tr.Settle <= 0 {
		tr.Settle = tr.EchoTimeout + 2*time.Second
	}
	return tr
}

// Measurement is what happened to the traffic around an action.
type Measurement struct {
	// ActionStart and ActionEnd bracket the action.
	ActionStart, ActionEnd time.Time
	// HTTP and Hold are labclient's own results.
	HTTP traffic.HTTPResult
	Hold traffic.HoldResult
	// Failed counts failed requests; FailedDuring those sent from the
	// action's start on.
	Failed, FailedDuring int
	// Opened counts the connections opened; Broken those that broke, and
	// BrokenDuring those that broke from the action's start on.
	Opened, Broken, BrokenDuring int
}

// String summarises the measurement for logs and reports.
func (m Measurement) String() string {
	return fmt.Sprintf("%d requests, %d failed (%d sent during or after the action); %d connections, %d broken (%d during or after the action)",
		m.HTTP.Sent, m.Failed, m.FailedDuring, m.Opened, m.Broken, m.BrokenDuring)
}

// Around runs the traffic, then action once it has flowed for Before, lets
// it flow for Settle more, and reports what broke: "run traffic, do X,
// report failed requests and broken connections". An error means the
// measurement itself did not work (or the action failed: its error is
// returned with the measurement so far).
func Around(ctx context.Context, lab *runner.Lab, tr Traffic, action func(context.Context) error) (Measurement, error) {
	tr = tr.withDefaults()
	var m Measurement
	hold, load, err := startTraffic(lab, tr)
	if err != nil {
		return m, err
	}
	if hold != nil {
		opened, failed, err := hold.WaitReady(2 * time.Minute)
		if err == nil && failed > 0 {
			err = fmt.Errorf("%d of %d connections to %s did not open", failed, tr.Conns, tr.Echo)
		}
		if err != nil {
			return m, errors.Join(err, stopTraffic(hold, load, &m))
		}
		m.Opened = opened
	}
	sleep(ctx, tr.Before)
	m.ActionStart = time.Now()
	actErr := action(ctx)
	m.ActionEnd = time.Now()
	sleep(ctx, tr.Settle)
	if err := stopTraffic(hold, load, &m); err != nil {
		return m, errors.Join(actErr, err)
	}
	m.Failed, m.FailedDuring = m.HTTP.Failed, m.HTTP.FailedStartedAfter(m.ActionStart)
	m.Broken = m.Hold.Broken
	m.BrokenDuring = m.Hold.BrokenBetween(m.ActionStart, m.Hold.End.Add(time.Second))
	if actErr != nil {
		return m, fmt.Errorf("the action under traffic failed: %w", actErr)
	}
	return m, nil
}

// startTraffic starts the connections and the request stream.
func startTraffic(lab *runner.Lab, tr Traffic) (hold, load *Client, err error) {
	if tr.Echo == "" && tr.URL == "" {
		return nil, nil, errors.New("traffic needs an echo address, a URL or both")
	}
	if tr.Echo != "" {
		hold, err = StartHold(lab, tr.Node, tr.Program, tr.Echo, tr.Conns, tr.EchoTimeout)
		if err != nil {
			return nil, nil, err
		}
	}
	if tr.URL != "" {
		load, err = StartLoad(lab, tr.Node, tr.Program, tr.URL, tr.Rate)
		if err != nil {
			return nil, nil, errors.Join(err, stopTraffic(hold, nil, &Measurement{}))
		}
	}
	return hold, load, nil
}

// stopTraffic ends both runs and keeps their results.
func stopTraffic(hold, load *Client, m *Measurement) error {
	var errs []error
	if load != nil {
		errs = append(errs, load.Stop(&m.HTTP))
	}
	if hold != nil {
		errs = append(errs, hold.Stop(&m.Hold))
	}
	return errors.Join(errs...)
}

// StartHold opens conns long-lived echo connections from node with
// labclient (program), each pinged every second; one whose echo takes
// longer than timeout counts as broken. Wait for them with WaitReady.
func StartHold(lab *runner.Lab, node, program, addr string, conns int, timeout time.Duration) (*Client, error) {
	return startClient(lab, node, "hold", program, "hold", "-addr", addr, "-conns", fmt.Sprint(conns),
		"-interval", "1s", "-timeout", timeout.String())
}

// StartLoad sends requests to url from node at rate per second with
// labclient (program), each on a new connection, until stopped.
func StartLoad(lab *runner.Lab, node, program, url string, rate float64) (*Client, error) {
	return startClient(lab, node, "load", program, "http", "-url", url, "-rate", fmt.Sprint(rate), "-timeout", "3s")
}

// sleep waits for d or the end of ctx: a measurement window, not a wait
// for an event.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
