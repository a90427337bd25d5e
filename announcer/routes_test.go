package announcer

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

// TestLoopWatchdogWithdrawsWhenStuck wedges the loop inside an IPVS Apply:
// every VIP is withdrawn once no pass has finished for max_failed_resyncs x
// resync_interval, stays withdrawn while the stuck pass completes (whose
// status says so), and is announced again by the pass after it.
func TestLoopWatchdogWithdrawsWhenStuck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		if l.Wedged() || l.LastPass().IsZero() {
			t.Fatalf("a running loop: wedged %v, last pass %v", l.Wedged(), l.LastPass())
		}
		if len(w.advertised()) != 2 {
			t.Fatalf("setup: advertised %v", w.advertised())
		}
		block := make(chan struct{})
		w.mu.Lock()
		w.block = block
		w.mu.Unlock()
		l.Poke()
		limit := time.Duration(cfg.Director.MaxFailedResyncs) * cfg.Director.ResyncInterval
		time.Sleep(limit)
		synctest.Wait()
		if got := w.advertised(); len(got) != 2 || l.Wedged() {
			t.Fatalf("withdrawn before the limit: %v (wedged %v)", got, l.Wedged())
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if got := w.advertised(); len(got) != 0 {
			t.Errorf("a stuck loop still attracts traffic: %v", got)
		}
		if !l.Wedged() {
			t.Error("Wedged() = false for a loop stuck in Apply")
		}
		evs, _, _, _ := l.Events().Since(0)
		if e := evs[len(evs)-1]; e.Kind != EventDirector || e.To != "withdrawn" || e.Reason != "announcer loop stuck" {
			t.Errorf("last event = %+v, want the withdraw", e)
		}

		// Unwedge: the stuck pass finishes and publishes the withdrawn
		// state; the next pass announces again.
		w.mu.Lock()
		w.block = nil
		w.mu.Unlock()
		close(block)
		synctest.Wait()
		if l.Wedged() {
			t.Error("Wedged() = true after the loop finished its pass")
		}
		if got := w.advertised(); len(got) != 2 {
			t.Errorf("not announced again after recovery: %v", got)
		}
		for _, v := range l.Status().VIPs {
			if !v.Advertised {
				t.Errorf("status after recovery: %+v", v)
			}
		}
		evs, _, _, _ = l.Events().Since(0)
		recovered := false
		for _, e := range evs {
			recovered = recovered || e.Reason == "announcer loop recovered"
		}
		if !recovered {
			t.Error("no event says the loop recovered")
		}
	})
}

// TestLoopWatchdogJudgesProgressNotLength: a pass that stays in Apply for
// several times max_failed_resyncs x resync_interval but completes a step
// every half of it (the first pass at 1,000 services x 10 under emulation)
// keeps every VIP advertised; once it stops moving (stuck on one call) every
// VIP is withdrawn after the bound, and announced again when it finishes.
func TestLoopWatchdogJudgesProgressNotLength(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		steps := make(chan struct{})
		w.mu.Lock()
		w.steps = steps
		before := w.applyRuns
		w.mu.Unlock()
		l.Poke()
		synctest.Wait() // the pass waits in Apply for its first step
		limit := time.Duration(cfg.Director.MaxFailedResyncs) * cfg.Director.ResyncInterval
		for i := range 6 {
			time.Sleep(limit / 2)
			synctest.Wait()
			if got := w.advertised(); len(got) != 2 || l.Wedged() {
				t.Fatalf("withdrawn %v into a pass that moves: %v (wedged %v)", time.Duration(i+1)*limit/2, got, l.Wedged())
			}
			steps <- struct{}{}
		}
		w.mu.Lock()
		runs := w.applyRuns - before
		w.mu.Unlock()
		if runs != 0 {
			t.Fatalf("setup: the long pass finished (%d Apply runs)", runs)
		}
		time.Sleep(limit)
		synctest.Wait()
		if got := w.advertised(); len(got) != 2 || l.Wedged() {
			t.Fatalf("withdrawn before the bound since the last step: %v (wedged %v)", got, l.Wedged())
		}
		time.Sleep(2 * time.Millisecond)
		synctest.Wait()
		if got := w.advertised(); len(got) != 0 || !l.Wedged() {
			t.Fatalf("a pass stuck on one call for the bound still attracts traffic: %v (wedged %v)", got, l.Wedged())
		}
		w.mu.Lock()
		w.steps = nil
		w.mu.Unlock()
		close(steps)
		synctest.Wait()
		if got := w.advertised(); len(got) != 2 || l.Wedged() {
			t.Errorf("not announced again after the pass finished: %v (wedged %v)", got, l.Wedged())
		}
	})
}

// TestLoopStatusIsWhatTheAdapterHas: routes lost behind the loop's back (a
// restarted routing daemon, an operator) show in status and are announced
// again on the next pass; a routing failure leaves status saying
// "not advertised".
func TestLoopStatusIsWhatTheAdapterHas(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		w.mu.Lock()
		clear(w.ads)
		w.setErr = errInjected
		w.mu.Unlock()
		l.Poke()
		synctest.Wait()
		for _, v := range l.Status().VIPs {
			if v.Advertised {
				t.Errorf("status claims %s advertised while the adapter has nothing", v.VIP)
			}
		}
		w.mu.Lock()
		w.setErr = nil
		w.mu.Unlock()
		time.Sleep(cfg.Director.ResyncInterval)
		synctest.Wait()
		if got := w.advertised(); len(got) != 2 {
			t.Errorf("lost routes not announced again: %v", got)
		}
		for _, v := range l.Status().VIPs {
			if !v.Advertised {
				t.Errorf("status after the routes came back: %+v", v)
			}
		}
	})
}

// TestLoopCommandsReadTheirWrites: a command returns once status shows it,
// without waiting for anything else.
func TestLoopCommandsReadTheirWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, w, l := upLoop(t)
		ctx := t.Context()
		vip := netip.MustParseAddr("198.18.0.11")
		if err := l.DrainBackend(ctx, BackendRef{Addr: netip.MustParseAddr("10.0.2.21")}, Note{Reason: "r"}); err != nil {
			t.Fatal(err)
		}
		if sv, _ := l.Status().Service("web"); !sv.Backends[0].Draining || w.weights("198.18.0.10") != "10.0.2.21:80=0 10.0.2.22:80=1" {
			t.Errorf("after DrainBackend: status %+v, kernel %s", sv.Backends[0], w.weights("198.18.0.10"))
		}
		if err := l.DisableVIP(ctx, vip, Note{}); err != nil {
			t.Fatal(err)
		}
		if v, _ := l.Status().VIP(vip); !v.Graceful || len(l.Status().Overrides.DisabledVIPs) != 1 {
			t.Errorf("after DisableVIP: %+v", v)
		}
		if err := l.EnableVIP(ctx, vip, Note{}); err != nil {
			t.Fatal(err)
		}
		if v, _ := l.Status().VIP(vip); v.Graceful || !v.Advertised || len(l.Status().Overrides.DisabledVIPs) != 0 {
			t.Errorf("after EnableVIP: %+v", v)
		}
		cfg2 := twoServiceConfig()
		cfg2.Director.HoldDown = 0
		cfg2.Digest = "v2"
		v, err := l.Reload(ctx, cfg2)
		if err != nil || l.Status().Config.Version != v.Version {
			t.Errorf("after Reload: %v, status version %d, want %d", err, l.Status().Config.Version, v.Version)
		}
	})
}
