package e2e

import (
	"fmt"
	"io"
	"time"
)

// DriftRow is one drift scenario: a director's kernel changed behind
// directord's back under traffic, and repaired.
type DriftRow struct {
	Event string
	// Repaired is how long after the change the kernel held directord's
	// programming again.
	Repaired time.Duration
	// Requests sent during the scenario and those sent from the change on
	// that failed.
	Requests, Failed int
	// Logged and Counted are the repair's log lines and the increase of
	// directord_drift_repairs_total.
	Logged, Counted int
}

// driftMarkdown renders the drift rows.
func (r *Report) driftMarkdown(w io.Writer) {
	if len(r.Drift) == 0 {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("## Drift repair\n\n")
	p("A director's kernel is changed by hand under traffic (20 HTTP requests per second, each on a new connection, through all three directors); directord restores it at a resync tick (IPVS, sysctls: `director.resync_interval`, 5 s, read backs spaced out when they are slow) or on the kernel's address event (the VIP), logs and counts the repair (docs/drift.md). Repaired after: from the change's command returning until the kernel held directord's programming again, as the test polls it.\n\n")
	p("| change on d1 | repaired after | failed requests | repairs logged / counted |\n|---|---|---|---|\n")
	for _, d := range r.Drift {
		p("| %s | %s | **%d** of %d | %d / %d |\n", d.Event, secs(d.Repaired), d.Failed, d.Requests, d.Logged, d.Counted)
	}
	p("\n")
}
