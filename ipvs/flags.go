package ipvs

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Service flag bits of include/uapi/linux/ip_vs.h. The scheduler flags SCHED1..3
// mean different things per scheduler (mh and sh: 1 = fallback, 2 = port).
const (
	flagPersistent uint32 = 0x0001
	flagHashed     uint32 = 0x0002 // kernel-internal, set on every dumped service
	flagOnePacket  uint32 = 0x0004
	flagSched1     uint32 = 0x0008
	flagSched2     uint32 = 0x0010
	flagSched3     uint32 = 0x0020

	// flagsManaged are the bits Diff compares and writes; anything else the
	// kernel reports (flagHashed) is internal state.
	flagsManaged = flagPersistent | flagOnePacket | flagSched1 | flagSched2 | flagSched3
)

// schedFlagNames names the scheduler flag bits the way ipvsadm does (-b), per
// scheduler. Generic names ("flag-1") are accepted for every scheduler.
func schedFlagNames(scheduler string) map[uint32]string {
	switch scheduler {
	case "mh":
		return map[uint32]string{flagSched1: "mh-fallback", flagSched2: "mh-port", flagSched3: "flag-3"}
	case "sh":
		return map[uint32]string{flagSched1: "sh-fallback", flagSched2: "sh-port", flagSched3: "flag-3"}
	}
	return map[uint32]string{flagSched1: "flag-1", flagSched2: "flag-2", flagSched3: "flag-3"}
}

// flagBits converts flag names into kernel bits for the given scheduler. It
// rejects names that belong to another scheduler ("mh-port" on wlc), as
// ipvsadm does, because the kernel would silently accept the bit and the
// scheduler would ignore it.
func flagBits(scheduler string, names []string) (uint32, error) {
	var bits uint32
	known := schedFlagNames(scheduler)
	for _, n := range names {
		switch n {
		case "ops":
			bits |= flagOnePacket
			continue
		case "flag-1":
			bits |= flagSched1
			continue
		case "flag-2":
			bits |= flagSched2
			continue
		case "flag-3":
			bits |= flagSched3
			continue
		}
		found := false
		for bit, name := range known {
			if name == n {
				bits |= bit
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("flag %q is not valid for scheduler %q (valid: %s)", n, scheduler, strings.Join(validFlagNames(scheduler), ", "))
		}
	}
	return bits, nil
}

// validFlagNames lists the accepted names for a scheduler, for error messages.
func validFlagNames(scheduler string) []string {
	names := []string{"ops", "flag-1", "flag-2", "flag-3"}
	for _, n := range schedFlagNames(scheduler) {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// flagNames converts kernel bits back into sorted names for the scheduler, so
// that what Apply reads back compares equal to a canonical configuration.
// The persistent bit is not a name: it is Service.Persistence.
func flagNames(scheduler string, bits uint32) []string {
	var names []string
	if bits&flagOnePacket != 0 {
		names = append(names, "ops")
	}
	known := schedFlagNames(scheduler)
	for _, bit := range []uint32{flagSched1, flagSched2, flagSched3} {
		if bits&bit != 0 {
			names = append(names, known[bit])
		}
	}
	sort.Strings(names)
	return names
}
