//go:build linux && privileged

package acceptance

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/lab/netlab"
)

// BenchmarkPrivilegedVerdictToFIB measures the time from a health verdict
// inside the real directord to the router's kernel FIB change, with FRR 8.4
// as the router (target: median under 100 ms), for a withdraw (the VIP's
// listener stops) and an announce (it listens again; hold_down is 0 so the
// announce is not delayed on purpose).
//
// How: the verdict's moment is the "time" field of directord's own
// "health state changed" log line (slog JSON, nanosecond precision); it is
// written by the health scheduler right when the dampened state flips,
// before the announcer is woken. The
// FIB change's moment is when `ip monitor route` in the router namespace
// printed the VIP's route being deleted or added, as read by this process.
// Both are wall-clock times of the same host. The path measured is therefore
// scheduler -> announcer pass -> GoBGP -> BGP UPDATE -> bgpd -> zebra ->
// kernel, without the health-check interval. The time from the listener
// change to the FIB change, which adds the probe interval (200 ms) and
// fall (2) or rise (1) probes, is reported too.
//
// Each iteration is one withdraw and one announce; run 20 of them:
//
//	go test -tags privileged -run '^$' -bench PrivilegedVerdictToFIB -benchtime 20x ./lab/acceptance
func BenchmarkPrivilegedVerdictToFIB(b *testing.B) { benchVerdictToFIB(b, dirConf{}) }

// slowNotifier is a notify section whose every channel is slow or failing:
// an exec hook that hangs until its 5 s timeout, and a webhook whose
// receiver refuses connections, both retried, with no grouping and no rate
// limit to speak of, so every verdict keeps them busy.
const slowNotifier = `notify:
  group_window: 0s
  rate: { burst: 1000, every: 1s }
  webhooks:
    - { url: "http://127.0.0.1:1/hook", backoff: 10ms, max_attempts: 100 }
  exec:
    - { command: [/bin/sleep, "60"], timeout: 5s, backoff: 10ms, max_attempts: 100 }
`

// BenchmarkPrivilegedVerdictToFIBSlowNotifier is the same path with
// notifications going to a hanging exec hook and a refused webhook: the
// figures must match BenchmarkPrivilegedVerdictToFIB's, since notifications
// run off the announcer loop.
func BenchmarkPrivilegedVerdictToFIBSlowNotifier(b *testing.B) {
	benchVerdictToFIB(b, dirConf{notify: slowNotifier})
}

func benchVerdictToFIB(b *testing.B, conf dirConf) {
	l := newLab(b, conf)
	l.startBGP()
	d := l.dirs[0]
	l.waitFIB(time.Now(), 30*time.Second, vip4, dirAddr4(1))
	mon := l.rtr.MonitorRoutes()
	verdicts := &verdictLog{proc: d.daemon, backend: vip4 + ":" + port4}
	verdicts.skipPast(b)

	var down, up, downListener, upListener []time.Duration
	b.ResetTimer()
	for range b.N {
		mon.Skip()
		changed := time.Now()
		l.setListener(d, port4, false)
		fib := waitRouteChange(b, mon, true)
		down = append(down, fib.Sub(verdicts.next(b, health.Down)))
		downListener = append(downListener, fib.Sub(changed))

		mon.Skip()
		changed = time.Now()
		l.setListener(d, port4, true)
		fib = waitRouteChange(b, mon, false)
		up = append(up, fib.Sub(verdicts.next(b, health.Up)))
		upListener = append(upListener, fib.Sub(changed))
	}
	b.StopTimer()
	if conf.notify != "" && !strings.Contains(d.daemon.Output(), "notification failed; retrying") {
		b.Fatalf("the notifier never tried to deliver: the figures do not show its effect")
	}
	report(b, "withdraw-verdict-to-fib", down)
	report(b, "announce-verdict-to-fib", up)
	report(b, "withdraw-listener-to-fib", downListener)
	report(b, "announce-listener-to-fib", upListener)
}

// waitRouteChange waits for the VIP's route to be deleted from (or added to)
// the router's FIB and returns when this process read that change.
func waitRouteChange(b *testing.B, mon *netlab.RouteMonitor, deleted bool) time.Time {
	b.Helper()
	for {
		line, at, err := mon.Wait(5*time.Second, vip4)
		if err != nil {
			b.Fatal(err)
		}
		if strings.HasPrefix(line, "Deleted") == deleted {
			return at
		}
	}
}

// verdictLog reads directord's health verdicts for one target from its JSON
// log, in order.
type verdictLog struct {
	proc    *netlab.Proc
	backend string
	skip    int // log lines already read
}

// logLine is the part of a "health state changed" line the benchmark uses.
type logLine struct {
	Time    time.Time `json:"time"`
	Msg     string    `json:"msg"`
	Backend string    `json:"backend"`
	// State is the verdict; directord's JSON log currently prints the
	// health.State number rather than its name, so both are accepted.
	State json.RawMessage `json:"state"`
}

// skipPast moves past every verdict logged so far (the start-up ones).
func (v *verdictLog) skipPast(b *testing.B) {
	b.Helper()
	v.skip = len(strings.Split(strings.TrimRight(v.proc.Output(), "\n"), "\n"))
}

// next returns the time of the target's next verdict, which must be state.
func (v *verdictLog) next(b *testing.B, state health.State) time.Time {
	b.Helper()
	for {
		line, i, err := v.proc.WaitOutput(`"msg":"health state changed"`, v.skip, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		v.skip = i + 1
		var ll logLine
		if err := json.Unmarshal([]byte(line), &ll); err != nil {
			b.Fatalf("directord log line %q: %v", line, err)
		}
		if ll.Backend != v.backend {
			continue
		}
		if got := string(ll.State); got != strconv.Quote(state.String()) && got != strconv.Itoa(int(state)) {
			b.Fatalf("directord's next verdict for %s is %s, want %s: %s", v.backend, got, state, line)
		}
		return ll.Time
	}
}

// report prints the median, 90th percentile and maximum in ms.
func report(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	msf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(msf(ds[len(ds)/2]), name+"-median-ms")
	b.ReportMetric(msf(ds[len(ds)*9/10]), name+"-p90-ms")
	b.ReportMetric(msf(ds[len(ds)-1]), name+"-max-ms")
	b.Logf("%s over %d runs: median %s, p90 %s, max %s (all: %v)", name, len(ds), ms(ds[len(ds)/2]), ms(ds[len(ds)*9/10]), ms(ds[len(ds)-1]), ds)
}
