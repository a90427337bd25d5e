package observe

import (
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/anycast-director/director/lab/runner"
	"github.com/anycast-director/director/lab/traffic"
)

// Client is a labclient run in the client node.
type Client struct {
	p *runner.Proc
}

// StartClient starts labclient (mode http or hold, with its flags) in node.
func StartClient(lab *runner.Lab, node, name string, args ...string) (*Client, error) {
	return startClient(lab, node, name, "labclient", args...)
}

// startClient starts program (a labclient) with args in node.
func startClient(lab *runner.Lab, node, name, program string, args ...string) (*Client, error) {
	p, err := lab.Start(node, name, append([]string{program}, args...)...)
	if err != nil {
		return nil, err
	}
	return &Client{p: p}, nil
}

// Proc is the labclient process (its LogPath receives -progress lines).
func (c *Client) Proc() *runner.Proc { return c.p }

// WaitReady waits for a hold run's READY line and returns how many
// connections opened and failed.
func (c *Client) WaitReady(timeout time.Duration) (opened, failed int, err error) {
	line, _, err := c.p.WaitOutput(traffic.ReadyPrefix, 0, timeout)
	if err != nil {
		return 0, 0, fmt.Errorf("labclient not ready: %w", err)
	}
	_, rest, _ := strings.Cut(line, traffic.ReadyPrefix)
	if _, err := fmt.Sscanf(rest, "opened=%d failed=%d", &opened, &failed); err != nil {
		return 0, 0, fmt.Errorf("READY line %q: %w", line, err)
	}
	return opened, failed, nil
}

// Stop ends the run with SIGTERM and decodes its result into v.
func (c *Client) Stop(v any) error {
	if err := c.p.Signal(syscall.SIGTERM); err != nil && !c.p.Exited() {
		return err
	}
	return c.Wait(30*time.Second, v)
}

// Wait waits for a run that ends by itself and decodes its result into v.
func (c *Client) Wait(timeout time.Duration, v any) error {
	if err := c.p.Wait(timeout); err != nil {
		c.p.Kill()
		return fmt.Errorf("labclient: %w: %s", err, c.p.Output())
	}
	return traffic.ParseResult(c.p.Output(), v)
}
