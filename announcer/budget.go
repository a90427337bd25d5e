package announcer

import (
	"math"
	"time"

	"github.com/anycast-director/director/config"
)

// shutdownSlack is what a graceful shutdown gets beyond graceful_shutdown,
// linger and its passes: the BGP Cease, and a margin.
const shutdownSlack = 10 * time.Second

// shutdownPasses is how many passes a shutdown waits for at most: the one
// under way when it is asked, the one that advertises the graceful-shutdown
// community, the one that withdraws, and the one that ends the linger.
const shutdownPasses = 4

// ShutdownBudget is how long Shutdown may take for director d whose slowest
// recent pass took slowestPass (Loop.SlowestPass): graceful_shutdown,
// linger, shutdownPasses of the slowest pass, and shutdownSlack. At 1,000
// services under emulation a pass took seconds, and a SIGTERM queued behind
// such passes missed a fixed 10 s slack ("graceful shutdown incomplete:
// announcer loop busy"). The sum saturates:
// graceful_shutdown: 2000000h with linger: 2000000h used to overflow to a
// negative budget, and SIGTERM exited 1 at once without the graceful
// withdraw (the configuration now bounds both to 10m as well).
func ShutdownBudget(d config.Director, slowestPass time.Duration) time.Duration {
	passes := shutdownPasses * min(slowestPass, time.Hour)
	return addSaturating(addSaturating(d.GracefulShutdown, d.Linger), passes+shutdownSlack)
}

// addSaturating adds two non-negative durations, stopping at the largest
// Duration instead of overflowing.
func addSaturating(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
