package announcer

import (
	"context"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anycast-director/director/config"
)

// TestShutdownBudgetSaturates: graceful_shutdown 2000000h plus linger
// 2000000h used to overflow to a negative budget (SIGTERM then exited 1 at
// once, skipping the withdraw). The configuration refuses such values now;
// the arithmetic saturates anyway.
func TestShutdownBudgetSaturates(t *testing.T) {
	huge := 2000000 * time.Hour
	for _, c := range []struct {
		d    config.Director
		want time.Duration
	}{
		{config.Director{GracefulShutdown: 3 * time.Second, Linger: 2 * time.Second}, 5*time.Second + shutdownPasses*time.Second + shutdownSlack},
		{config.Director{}, shutdownPasses*time.Second + shutdownSlack},
		{config.Director{GracefulShutdown: huge, Linger: huge}, math.MaxInt64},
		{config.Director{GracefulShutdown: math.MaxInt64, Linger: 1}, math.MaxInt64},
	} {
		if got := ShutdownBudget(c.d, time.Second); got != c.want {
			t.Errorf("ShutdownBudget(graceful %s, linger %s) = %s, want %s", c.d.GracefulShutdown, c.d.Linger, got, c.want)
		}
	}
}

// TestShutdownWithSlowPassesFinishesWithinItsBudget: every pass takes 8 s
// (1,000 services under emulation) and SIGTERM arrives while one is under
// way. The shutdown waits for that pass, then one to advertise the
// graceful-shutdown community, one to withdraw and one to end the linger;
// it finishes within the budget the daemon gives it. A fixed 10 s slack
// ran out ("graceful shutdown incomplete: announcer loop busy"). The loop
// is seen as wedged here (no pass within 3 resync intervals), so it is
// poked after every pass: the command must not lose to those pokes.
func TestShutdownWithSlowPassesFinishesWithinItsBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const pass = 8 * time.Second
		cfg, w, l := upLoop(t)
		w.mu.Lock()
		w.applyDelay = pass
		w.mu.Unlock()
		time.Sleep(3 * pass) // slow passes run and are recorded
		if got := l.SlowestPass(); got < pass {
			t.Fatalf("SlowestPass = %s after passes of %s", got, pass)
		}
		l.Poke()
		time.Sleep(time.Second) // a pass is under way
		budget := ShutdownBudget(cfg.Director, l.SlowestPass())
		ctx, cancel := context.WithTimeout(context.Background(), budget)
		defer cancel()
		start := time.Now()
		if err := l.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown with %s passes after %s of a budget of %s: %v", pass, time.Since(start), budget, err)
		}
		need := shutdownPasses*pass + cfg.Director.GracefulShutdown + cfg.Director.Linger
		if took := time.Since(start); took > need {
			t.Errorf("shutdown took %s, more than the %s its passes need: the command waited behind passes", took, need)
		}
	})
}
