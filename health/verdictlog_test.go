package health

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anycast-director/director/health/check"
	"github.com/anycast-director/director/internal/syncbuf"
)

// linesWith returns the lines of logs that contain every one of parts.
func linesWith(logs string, parts ...string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		match := line != ""
		for _, p := range parts {
			match = match && strings.Contains(line, p)
		}
		if match {
			out = append(out, line)
		}
	}
	return out
}

// TestSchedulerLogsFirstUpAtDebug: a first verdict of Up is routine (every
// target has one at start-up) and goes to debug; a first Down, and every
// later change, is logged at info, one line each.
func TestSchedulerLogsFirstUpAtDebug(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var failA atomic.Bool
		f := newFake(func(_ context.Context, tg Target) error {
			if tg.Port == 81 || (tg.Port == 80 && failA.Load()) {
				return errors.New("refused")
			}
			return nil
		})
		var buf syncbuf.Buffer
		opts := Options{Checkers: map[check.Type]Checker{check.TCP: f}, Coalesce: -1}
		s := NewScheduler(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), opts)
		s.Update([]Target{tcpTarget(80, time.Second), tcpTarget(81, time.Second)})
		stop := startScheduler(t, s)
		defer stop()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		changed := `msg="health state changed" backend=10.0.0.1:`
		if got := linesWith(buf.String(), "level=DEBUG", changed+"80 ", "state=up"); len(got) != 1 {
			t.Errorf("first Up of :80 logged at debug %d times, want once", len(got))
		}
		if got := linesWith(buf.String(), "level=INFO", changed+"80 "); len(got) != 0 {
			t.Errorf("first Up of :80 logged at info: %q", got)
		}
		if got := linesWith(buf.String(), "level=INFO", changed+"81 ", "state=down"); len(got) != 1 {
			t.Errorf("first Down of :81 logged at info %d times, want once", len(got))
		}
		failA.Store(true)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := linesWith(buf.String(), "level=INFO", changed+"80 ", "state=down"); len(got) != 1 {
			t.Errorf(":80 going down logged at info %d times, want once", len(got))
		}
	})
}
