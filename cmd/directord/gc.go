package main

import (
	"fmt"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// defaultGCPercent is the garbage collector's target directord sets for itself
// when the operator's environment sets neither GOGC nor GOMEMLIMIT: the heap
// may grow 50 % over what is live before a collection (Go's default is 100 %).
//
// directord's live heap is small and grows with the configuration (at 100
// services x 10 real servers about 4 MiB, at 1,000 x 10 about 20 MiB), and
// it allocates little in steady state (the announcer's passes, a few MiB per
// resync interval at 1,000 services): collections are rare either way, so
// halving the headroom costs about a collection more per minute and saves
// a quarter of the heap's resident memory (docs/operations.md, "Memory").
const defaultGCPercent = 50

// applyMemorySettings sets defaultGCPercent unless the environment (read by
// getenv) already tunes the collector, keeps the process's memory out of
// transparent huge pages, and says which settings are in force.
func applyMemorySettings(getenv func(string) string) string {
	gc := applyGCDefault(getenv)
	if err := disableHugePages(); err != nil {
		return gc + "; transparent huge pages left as the kernel has them: " + err.Error()
	}
	return gc + "; transparent huge pages off for directord"
}

// applyGCDefault sets defaultGCPercent unless the environment already tunes
// the collector, and says which setting is in force.
func applyGCDefault(getenv func(string) string) string {
	gogc, limit := getenv("GOGC"), getenv("GOMEMLIMIT")
	if gogc != "" || limit != "" {
		return fmt.Sprintf("garbage collector tuned by the environment (GOGC=%q GOMEMLIMIT=%q)", gogc, limit)
	}
	debug.SetGCPercent(defaultGCPercent)
	return fmt.Sprintf("garbage collector target GOGC=%d (directord's default; set GOGC or GOMEMLIMIT in the environment to override)", defaultGCPercent)
}

// disableHugePages asks the kernel not to back this process's memory with
// transparent huge pages. With THP "always" (Debian's kernels) each 2 MiB
// region of the Go heap the process touches becomes resident whole: a heap
// of a few MiB, sparse after collections, then holds several MiB more than
// it uses, for no gain at this size.
func disableHugePages() error {
	if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl PR_SET_THP_DISABLE: %w", err)
	}
	return nil
}
