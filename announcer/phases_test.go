package announcer

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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
