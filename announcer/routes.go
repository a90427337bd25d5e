package announcer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/internal/progress"
	"github.com/anycast-director/director/routing"
)

// routeWriter is the one goroutine that calls the routing adapter: the loop's
// passes hand it the whole desired set (set), ask it what is in place
// (advertised) and reconfigure it; nothing else touches the adapter. It also
// is the loop's watchdog: when for max_failed_resyncs x resync_interval no
// pass has finished and the running pass has made no progress (the loop is
// wedged, for example inside an IPVS call that never returns), it withdraws
// every VIP itself, and keeps them withdrawn, whatever the stuck pass hands
// it, until a pass finishes. That pass publishes the withdrawn state; the
// loop then runs another, which announces again. A pass that is long but
// moving (the first pass programming 10,000 destinations under emulation,
// a starved machine) reports progress after each step (Loop.progressed, and
// the data plane after each service through internal/progress) and is left
// alone: judging the pass's length withdrew every VIP of a healthy director
// a dozen times at start-up.
//
// It keeps no advertisements of its own: the adapter alone knows what is
// advertised.
type routeWriter struct {
	adv    routing.Advertiser
	log    *slog.Logger
	events *EventLog
	now    func() time.Time
	// wedgedAt returns the time after which the loop counts as wedged: the
	// last finished pass, the running pass's last progress (or Run's start)
	// plus the limit.
	wedgedAt func() time.Time
	calls    chan func()
	done     chan struct{} // closed when the writer goroutine ends

	// Owned by the writer goroutine.
	wedged bool
}

// errRoutesStopped is returned by calls made after the writer ended.
var errRoutesStopped = errors.New("route writer stopped")

// newRouteWriter returns a writer for adv; nothing runs until run.
func newRouteWriter(adv routing.Advertiser, log *slog.Logger, events *EventLog, now func() time.Time, wedgedAt func() time.Time) *routeWriter {
	return &routeWriter{adv: adv, log: log, events: events, now: now, wedgedAt: wedgedAt,
		calls: make(chan func()), done: make(chan struct{})}
}

// run serves calls and watches the loop until ctx ends. After every call the
// watchdog's timer is set again from the last finished pass.
func (w *routeWriter) run(ctx context.Context, director func() string) {
	defer close(w.done)
	timer := time.NewTimer(w.untilWedged())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-w.calls:
			f()
		case <-timer.C:
			if !w.wedged && w.now().After(w.wedgedAt()) {
				w.withdrawWedged(ctx, director())
			}
		}
		timer.Reset(w.untilWedged())
	}
}

// untilWedged is how long until the loop counts as wedged (at least 1 ms;
// an hour while it already is: only a finished pass ends that).
func (w *routeWriter) untilWedged() time.Duration {
	if w.wedged {
		return time.Hour
	}
	return max(w.wedgedAt().Sub(w.now())+time.Millisecond, time.Millisecond)
}

// withdrawWedged withdraws every VIP because the loop stopped finishing
// passes: a wedged daemon must not attract traffic.
func (w *routeWriter) withdrawWedged(ctx context.Context, director string) {
	w.wedged = true
	w.log.Error("announcer loop is stuck; withdrawing every VIP", "reason",
		fmt.Sprintf("no pass finished and the running pass made no progress for max_failed_resyncs x resync_interval, up to %s", w.wedgedAt().Format(time.RFC3339Nano)), "director", director)
	if err := w.adv.Set(ctx, nil); err != nil {
		w.log.Error("withdraw failed", "err", err)
	}
	w.events.Append(Event{Time: w.now(), Kind: EventDirector, Subject: director,
		To: "withdrawn", Reason: "announcer loop stuck"})
}

// do runs f on the writer goroutine and waits for it.
func (w *routeWriter) do(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case w.calls <- func() { f(); close(ran) }:
	case <-w.done:
		return errRoutesStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	<-ran // f must finish: it writes the caller's results
	progress.Report(ctx)
	return nil
}

// set hands the adapter the whole desired set. While the loop counts as
// wedged it keeps every VIP withdrawn instead and reports wedged.
func (w *routeWriter) set(ctx context.Context, ads []routing.Advertisement) (wedged bool, err error) {
	if derr := w.do(ctx, func() {
		wedged = w.wedged
		if wedged {
			ads = nil
		}
		err = w.adv.Set(ctx, ads)
	}); derr != nil {
		return false, derr
	}
	return wedged, err
}

// advertised asks the adapter what is in place.
func (w *routeWriter) advertised(ctx context.Context) (ads []routing.Advertisement, err error) {
	if derr := w.do(ctx, func() { ads, err = w.adv.Advertised(ctx) }); derr != nil {
		return nil, derr
	}
	return ads, err
}

// peers asks the adapter for its sessions.
func (w *routeWriter) peers(ctx context.Context) (out []routing.PeerStatus) {
	_ = w.do(ctx, func() { out = w.adv.Peers() })
	return out
}

// reconfigure hands adapters that take it the new configuration.
func (w *routeWriter) reconfigure(ctx context.Context, cfg *config.Config) error {
	r, ok := w.adv.(Reconfigurer)
	if !ok {
		return nil
	}
	var err error
	if derr := w.do(ctx, func() { err = r.Reconfigure(ctx, cfg) }); derr != nil {
		return derr
	}
	return err
}

// passFinished tells the writer a pass finished, which ends a wedge; it
// reports whether one ended, so the loop runs another pass that announces
// again.
func (w *routeWriter) passFinished(ctx context.Context) (recovered bool) {
	_ = w.do(ctx, func() {
		recovered, w.wedged = w.wedged, false
	})
	return recovered
}
