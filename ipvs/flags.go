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
	// FlagPersistent is set by the kernel when a service has a persistence
	// timeout; Service.Persistence carries it, not a flag name.
	FlagPersistent uint32 = 0x0001
	flagHashed     uint32 = 0x0002 // kernel-internal, set on every dumped service
	flagOnePacket  uint32 = 0x0004
	flagSched1     uint32 = 0x0008
	flagSched2     uint32 = 0x0010
	flagSched3     uint32 = 0x0020

	// flagsManaged are the bits Diff compares and writes; anything else the
	// kernel reports (flagHashed) is internal state.
	flagsManaged = FlagPersistent | flagOnePacket | flagSched1 | flagSched2 | flagSched3
)

// schedFlagName names a scheduler flag bit the way ipvsadm does (-b), per
// scheduler (mh and sh: 1 = fallback, 2 = port); other schedulers have only
// the generic names ("flag-1"), which every scheduler accepts. It does not
// allocate: Apply compares flags on every pass.
func schedFlagName(scheduler string, bit uint32) string {
	switch {
	case scheduler == "mh" && bit == flagSched1:
		return "mh-fallback"
	case scheduler == "mh" && bit == flagSched2:
		return "mh-port"
	case scheduler == "sh" && bit == flagSched1:
		return "sh-fallback"
	case scheduler == "sh" && bit == flagSched2:
		return "sh-port"
	case bit == flagSched1:
		return "flag-1"
	case bit == flagSched2:
		return "flag-2"
	}
	return "flag-3"
}

// FlagBits converts flag names into kernel bits for the given scheduler. It
// rejects names that belong to another scheduler ("mh-port" on wlc), as
// ipvsadm does, because the kernel would silently accept the bit and the
// scheduler would ignore it.
func FlagBits(scheduler string, names []string) (uint32, error) {
	var bits uint32
	for _, n := range names {
		bit := flagBit(scheduler, n)
		if bit == 0 {
			return 0, fmt.Errorf("flag %q is not valid for scheduler %q (valid: %s)", n, scheduler, strings.Join(validFlagNames(scheduler), ", "))
		}
		bits |= bit
	}
	return bits, nil
}

// flagBit returns the bit of one flag name for the scheduler, 0 for none.
func flagBit(scheduler, name string) uint32 {
	switch name {
	case "ops":
		return flagOnePacket
	case "flag-1":
		return flagSched1
	case "flag-2":
		return flagSched2
	case "flag-3":
		return flagSched3
	}
	for _, bit := range [...]uint32{flagSched1, flagSched2, flagSched3} {
		if schedFlagName(scheduler, bit) == name {
			return bit
		}
	}
	return 0
}

// validFlagNames lists the accepted names for a scheduler, for error messages.
func validFlagNames(scheduler string) []string {
	names := []string{"ops", "flag-1", "flag-2", "flag-3"}
	for _, bit := range [...]uint32{flagSched1, flagSched2, flagSched3} {
		if n := schedFlagName(scheduler, bit); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// FlagNames converts kernel bits back into sorted names for the scheduler, so
// that what Apply reads back compares equal to a canonical configuration.
// The persistent bit is not a name: it is Service.Persistence.
func FlagNames(scheduler string, bits uint32) []string {
	var names []string
	if bits&flagOnePacket != 0 {
		names = append(names, "ops")
	}
	for _, bit := range [...]uint32{flagSched1, flagSched2, flagSched3} {
		if bits&bit != 0 {
			names = append(names, schedFlagName(scheduler, bit))
		}
	}
	sort.Strings(names)
	return names
}
