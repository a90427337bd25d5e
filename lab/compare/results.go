package compare

import "time"

// Run is what one daemon did in one repetition of one scenario. Times are in
// seconds; a figure that could not be measured is negative and the reason is
// in Errors.
type Run struct {
	// Daemon, Scenario and Rep identify the run.
	Daemon   Daemon `json:"daemon"`
	Scenario string `json:"scenario"`
	Rep      int    `json:"rep"`

	// StartInIPVS is process start to every service and real server in
	// IPVS; StartSettled to every weight right (health settled).
	StartInIPVS  float64 `json:"start_in_ipvs_s"`
	StartSettled float64 `json:"start_settled_s"`
	// StartWrites are the IPVS writes from start to settled.
	StartWrites Writes `json:"start_writes"`

	// Steady-state window: its length, the probes the listeners accepted,
	// the rate that makes, the rate the daemon must sustain, the daemon's
	// CPU time, and the IPVS writes (healthy servers: there should be none).
	SteadySeconds float64 `json:"steady_s"`
	Probes        uint64  `json:"probes"`
	ProbeRate     float64 `json:"probe_rate"`
	Demanded      float64 `json:"demanded_rate"`
	CPUSeconds    float64 `json:"cpu_s"`
	SteadyWrites  Writes  `json:"steady_writes"`
	// RSS is the resident memory summed over the daemon's processes at the
	// end of the steady window; RSSLargest is its largest process's.
	RSS        int64 `json:"rss_bytes"`
	RSSLargest int64 `json:"rss_largest_bytes"`
	// RSSAnon is the anonymous part of RSS (heap, stacks, written data):
	// what the daemon holds beyond the binary's pages that the page cache
	// shares and can reclaim.
	RSSAnon int64 `json:"rss_anon_bytes"`

	// Detection: real server 0 stops answering, to weight 0 in every
	// service; Recovery: it answers again, to its weight back everywhere.
	// The Other counts are IPVS writes beyond the N the change needs.
	Detect       float64 `json:"detect_s"`
	DetectWrites Writes  `json:"detect_writes"`
	DetectOther  int64   `json:"detect_other_writes"`
	DetectWrong  int     `json:"detect_other_dests_changed"`
	// DetectTimedOut is the wait detection outlasted when the weights never
	// became right (the daemon did not finish; Detect is then -1): the
	// detection took longer than this. 0 when it finished or did not run.
	DetectTimedOut float64 `json:"detect_timed_out_s,omitempty"`
	Recover        float64 `json:"recover_s"`
	RecoverWrites  Writes  `json:"recover_writes"`
	RecoverOther   int64   `json:"recover_other_writes"`

	// Reload: real server 1's weight changed in all N services, SIGHUP, to
	// applied everywhere. ReloadOther counts the writes the reload caused
	// beyond the N weight changes (until Settle after it applied);
	// ReloadWrong the other (service, server) pairs seen changed.
	Reload       float64 `json:"reload_s"`
	ReloadWrites Writes  `json:"reload_writes"`
	ReloadOther  int64   `json:"reload_other_writes"`
	ReloadWrong  int     `json:"reload_other_dests_changed"`

	// Stop is SIGTERM to exit.
	Stop float64 `json:"stop_s"`

	// Errors lists what went wrong; the run's other figures still count.
	Errors []string `json:"errors,omitempty"`
}

// CPUPerProbe is the daemon's CPU time per completed probe, in milliseconds.
func (r Run) CPUPerProbe() float64 {
	if r.Probes == 0 {
		return -1
	}
	return r.CPUSeconds * 1000 / float64(r.Probes)
}

// CPUPercent is the daemon's CPU use in the steady window, in % of one core.
func (r Run) CPUPercent() float64 {
	if r.SteadySeconds <= 0 {
		return -1
	}
	return r.CPUSeconds * 100 / r.SteadySeconds
}

// KeptUp is the achieved probe rate over the demanded one.
func (r Run) KeptUp() float64 {
	if r.Demanded <= 0 {
		return -1
	}
	return r.ProbeRate / r.Demanded
}

// Results are a whole comparison: the machine and every run.
type Results struct {
	// Started and Finished bound the measurement.
	Started, Finished time.Time
	// Commit is the source's git commit ("-dirty" when it had changes).
	Commit string
	// Host describes the machine: CPU model, cores, kernel, load.
	Host Host
	// GuestKernel is the VM's kernel release; TCG says it was emulated.
	GuestKernel string
	TCG         bool
	// GuestCPUs is the number of virtual CPUs.
	GuestCPUs int
	// Keepalived is `keepalived --version`'s first line.
	Keepalived string
	// Scenarios are the configurations, in the order run.
	Scenarios []Scenario
	// Reps is the number of repetitions of each scenario.
	Reps int
	// Only names the one daemon a narrowed run measured ("": both).
	Only Daemon `json:",omitempty"`
	// Runs are every daemon's runs.
	Runs []Run
	// Partial, when set, says what a narrowed run left out of the full
	// comparison; the report shows it in its header.
	Partial string `json:",omitempty"`
}

// Host describes the machine that ran a benchmark.
type Host struct {
	CPU    string
	Cores  int
	Kernel string
	// LoadBefore and LoadAfter are the 1-minute load averages.
	LoadBefore, LoadAfter float64
}
