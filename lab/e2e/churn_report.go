package e2e

import (
	"fmt"
	"io"
	"time"
)

// ChurnRow is one churn scenario: a real-server change with long-lived
// connections open, then a director killed.
type ChurnRow struct {
	// Event is the change; Sync whether ipvs.sync ran.
	Event string
	Sync  bool
	// Open connections, and how many of them the killed director forwarded.
	Open, OnVictim int
	// BrokenByChange broke before the kill; Broken from the kill on.
	BrokenByChange, Broken int
	// Requests sent during the scenario and those sent from the change on
	// that failed.
	Requests, Failed int
	// Synced is how long after the change every surviving director held
	// every connection (with sync); Converged how long the router took to
	// drop the killed director.
	Synced, Converged time.Duration
}

// churnMarkdown renders the churn rows: one line per change, without and
// with synchronization side by side.
func (r *Report) churnMarkdown(w io.Writer) {
	if len(r.Churn) == 0 {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("## Real servers changed, then a director lost\n\n")
	p("200 echo connections open (pinged every second) and 20 HTTP requests per second; the real servers change on every director, then director d3 is killed and the router moves its flows to d1 and d2, whose Maglev tables no longer map every flow to the real server it started on (docs/flow-sync.md). ")
	p("*without sync*: each director knows only its own connections (measured, not asserted). *with sync*: `ipvs.sync` runs the kernel's sync daemons on every director (0 broken asserted). On d3: its IPVS active connections when it was killed; with sync they include the other directors' synchronized entries.\n\n")
	p("| change, then d3 killed | without sync: broken / open (on d3) | with sync: broken / open (on d3) | failed requests, without / with | sync complete after |\n|---|---|---|---|---|\n")
	var order []string
	rows := map[string]map[bool]*ChurnRow{}
	for i := range r.Churn {
		c := &r.Churn[i]
		if rows[c.Event] == nil {
			rows[c.Event] = map[bool]*ChurnRow{}
			order = append(order, c.Event)
		}
		rows[c.Event][c.Sync] = c
	}
	cell := func(c *ChurnRow) string {
		if c == nil {
			return "not run"
		}
		s := fmt.Sprintf("**%d** / %d (%d)", c.Broken, c.Open, c.OnVictim)
		if c.BrokenByChange > 0 {
			s += fmt.Sprintf(", %d more before the kill", c.BrokenByChange)
		}
		return s
	}
	failed := func(c *ChurnRow) string {
		if c == nil {
			return "-"
		}
		return fmt.Sprintf("%d of %d", c.Failed, c.Requests)
	}
	for _, ev := range order {
		without, with := rows[ev][false], rows[ev][true]
		synced := "-"
		if with != nil {
			synced = secs(with.Synced)
		}
		p("| %s | %s | %s | %s / %s | %s |\n", ev, cell(without), cell(with), failed(without), failed(with), synced)
	}
	p("\n")
}
