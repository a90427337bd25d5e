package announcer

import (
	"context"
	"time"

	"github.com/anycast-director/director/ipvs"
)

// The IPVS counters in status are read by a goroutine of their own, never
// by a pass. Reading them takes one netlink dump per service: at 1,000
// services under emulation that was tens of seconds, spent inside the
// resync pass, which held up every health change, command and SIGTERM
// behind it (and the watchdog saw a stuck loop). The reader refreshes once
// per resync interval, or less often when reading is slow, so that it
// spends at most about a tenth of its time reading; a pass takes the latest
// reading.

// statsDuty bounds the share of time spent reading the kernel back: after
// a read that took d, the stats reader waits at least statsDuty x d, and a
// resync tick asks for the next full read no sooner (verifyDue).
const statsDuty = 9

// readStats refreshes l.counters until ctx ends; done is closed on return.
func (l *Loop) readStats(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	if l.deps.IPVS == nil {
		return
	}
	for {
		start := l.now()
		c, err := l.deps.IPVS.Stats(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.log.Warn("read IPVS counters", "err", err)
		} else {
			l.counters.Store(&c)
		}
		wait := max(time.Duration(l.st.resyncNanos.Load()), statsDuty*l.now().Sub(start))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// latestCounters is the reader's latest reading (nil before the first).
func (l *Loop) latestCounters() map[ipvs.Key]Counters {
	if c := l.counters.Load(); c != nil {
		return *c
	}
	return nil
}
