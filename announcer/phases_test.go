package announcer

import (
	"github.com/anycast-director/director/internal/syncbuf"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anycast-director/director/health"
)

// syncBuffer is a buffer safe for a logger and a reader at once.
type syncBuffer = syncbuf.Buffer

// TestLoopLogsWhereASlowPassWent: a pass whose IPVS programming takes 2 s
// is logged as slow, naming the step; a quick pass is not logged.
func TestLoopLogsWhereASlowPassWent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := twoServiceConfig()
		cfg.Director.HoldDown = 0
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		w.setHealth(healthOf(cfg, allUp))
		var logs syncBuffer
		l := New(cfg, w.deps(), slog.New(slog.NewTextHandler(&logs, nil)), Options{})
		defer runLoop(t, l)()
		synctest.Wait()
		if strings.Contains(logs.String(), "slow reconcile pass") {
			t.Fatalf("quick passes logged as slow:\n%s", logs.String())
		}
		w.mu.Lock()
		w.applyDelay = 2 * time.Second
		w.mu.Unlock()
		l.Poke()
		time.Sleep(3 * time.Second)
		synctest.Wait()
		var line string
		for _, s := range strings.Split(logs.String(), "\n") {
			if strings.Contains(s, "slow reconcile pass") {
				line = s
			}
		}
		if !strings.Contains(line, "took=2s") || !strings.Contains(line, "program 2s") {
			t.Errorf("slow pass logged as %q, want took=2s and program 2s", line)
		}
	})
}

// TestLoopSummarisesFirstVerdicts: the first verdicts that are Up (which the
// health checker logs at debug only) are counted in one info line per pass;
// later changes add no such line.
func TestLoopSummarisesFirstVerdicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := twoServiceConfig()
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		var logs syncBuffer
		l := New(cfg, w.deps(), slog.New(slog.NewTextHandler(&logs, nil)), Options{})
		defer runLoop(t, l)()
		synctest.Wait()
		summaries := func() []string {
			var out []string
			for _, s := range strings.Split(logs.String(), "\n") {
				if strings.Contains(s, "backends passed their first health check") {
					out = append(out, s)
				}
			}
			return out
		}
		w.setHealth(healthOf(cfg, map[string]health.State{"10.0.2.21": up, "10.0.2.22": up, "10.0.2.31": down}))
		time.Sleep(time.Second)
		synctest.Wait()
		if got := summaries(); len(got) != 1 || !strings.Contains(got[0], "count=2 ") {
			t.Fatalf("first verdicts summarised as %q, want one line with count=2 (10.0.2.31 is down)", got)
		}
		w.setHealth(healthOf(cfg, map[string]health.State{"10.0.2.21": up, "10.0.2.22": up, "10.0.2.31": up}))
		time.Sleep(time.Second)
		synctest.Wait()
		if got := summaries(); len(got) != 1 {
			t.Errorf("a recovery counted as a first verdict: %q", got)
		}
	})
}
