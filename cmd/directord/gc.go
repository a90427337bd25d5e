package main

import (
	"fmt"
	"runtime/debug"
)

// defaultGCPercent is the garbage collector's target directord sets for itself
// when the operator's environment sets neither GOGC nor GOMEMLIMIT: the heap
// may grow 50 % over what is live before a collection (Go's default is 100 %).
//
// directord's live heap is small and grows with the configuration (at 100
// services x 10 real servers about 4 MiB, at 1,000 x 10 about 25 MiB), and
// it allocates little in steady state (the announcer's passes, a few MiB per
// resync interval at 1,000 services): collections are rare either way, so
// halving the headroom costs about a collection more per minute and saves
// a quarter of the heap's resident memory (docs/operations.md, "Memory").
const defaultGCPercent = 50

// applyGCDefault sets defaultGCPercent unless the environment (read by
// getenv) already tunes the collector, and says which setting is in force.
func applyGCDefault(getenv func(string) string) string {
	gogc, limit := getenv("GOGC"), getenv("GOMEMLIMIT")
	if gogc != "" || limit != "" {
		return fmt.Sprintf("garbage collector tuned by the environment (GOGC=%q GOMEMLIMIT=%q)", gogc, limit)
	}
	debug.SetGCPercent(defaultGCPercent)
	return fmt.Sprintf("garbage collector target GOGC=%d (directord's default; set GOGC or GOMEMLIMIT in the environment to override)", defaultGCPercent)
}
