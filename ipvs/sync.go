package ipvs

import (
	"fmt"
	"net/netip"
	"strings"
)

// SyncState is the role of an IPVS connection synchronization daemon: a
// master sends the connections this director schedules, a backup receives
// those of the other directors and creates entries for them.
type SyncState int

const (
	// SyncMaster is IP_VS_STATE_MASTER: multicasts this director's
	// connections.
	SyncMaster SyncState = 1
	// SyncBackup is IP_VS_STATE_BACKUP: receives the other directors'
	// connections.
	SyncBackup SyncState = 2
)

// String returns "master" or "backup".
func (s SyncState) String() string {
	switch s {
	case SyncMaster:
		return "master"
	case SyncBackup:
		return "backup"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// The kernel's defaults for the settings a sync daemon is started without
// (net/netfilter/ipvs/ip_vs_sync.c, start_sync_thread).
var (
	// DefaultSyncGroup is IP_VS_SYNC_GROUP, the IPv4 multicast group.
	DefaultSyncGroup = netip.AddrFrom4([4]byte{224, 0, 0, 81})
)

const (
	// DefaultSyncPort is IP_VS_SYNC_PORT, the first UDP port (one more per
	// sync_ports thread).
	DefaultSyncPort = 8848
	// DefaultSyncTTL is the multicast TTL: the directors' own segment.
	DefaultSyncTTL = 1
)

// SyncDaemon is one sync daemon: its role and its settings, as they are
// started or as the kernel reports them.
type SyncDaemon struct {
	// State is master or backup.
	State SyncState
	// Interface sends (master) or receives (backup) the multicast.
	Interface string
	// SyncID tags a master's messages; a backup with a non-zero SyncID
	// ignores the messages of other IDs.
	SyncID uint8
	// MaxLen is the largest UDP payload of a message (sync_maxlen); 0
	// starts the daemon with the kernel's choice from the interface MTU.
	MaxLen uint16
	// Group is the multicast group; invalid starts it with DefaultSyncGroup.
	Group netip.Addr
	// Port is the first UDP port; 0 starts it with DefaultSyncPort.
	Port uint16
	// TTL is the multicast TTL; 0 starts it with DefaultSyncTTL.
	TTL uint8
}

// String renders d the way logs and status show it:
// "master eth1 id 7 224.0.0.81:8848 ttl 1 maxlen 1472".
func (d SyncDaemon) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s id %d", d.State, d.Interface, d.SyncID)
	if d.Group.IsValid() || d.Port != 0 {
		fmt.Fprintf(&b, " %s", netip.AddrPortFrom(d.Group, d.Port))
	}
	if d.TTL != 0 {
		fmt.Fprintf(&b, " ttl %d", d.TTL)
	}
	if d.MaxLen != 0 {
		fmt.Fprintf(&b, " maxlen %d", d.MaxLen)
	}
	return b.String()
}

// Normalized returns d as the kernel reports it once started: the defaults
// filled in and the message size clamped, the way start_sync_thread does
// it. mtu is the interface's MTU (a backup's default message size follows
// it; a master's assumes 1500).
func (d SyncDaemon) Normalized(mtu int) SyncDaemon {
	if !d.Group.IsValid() {
		d.Group = DefaultSyncGroup
	}
	if d.Port == 0 {
		d.Port = DefaultSyncPort
	}
	if d.TTL == 0 {
		d.TTL = DefaultSyncTTL
	}
	hdr := 20 + 8 // IPv4 and UDP headers
	if d.Group.Is6() {
		hdr = 40 + 8
	}
	lo, size := 1, 1500
	if d.State == SyncBackup {
		lo, size = 1024, min(max(mtu, 1500), 65535)
	}
	if d.MaxLen == 0 {
		d.MaxLen = uint16(size - hdr)
	} else {
		d.MaxLen = uint16(min(max(int(d.MaxLen), lo), 65535-hdr))
	}
	return d
}

// SyncConfig is the desired synchronization: a master and a backup with the
// same settings on every director, so each sends its connections to all the
// others and receives theirs.
type SyncConfig struct {
	// Interface carries the sync traffic (the directors' shared segment).
	Interface string
	// SyncID tells this cluster's messages from another's on the segment.
	SyncID uint8
	// MaxLen is the largest message payload; 0 lets the kernel choose.
	MaxLen uint16
	// Group, Port and TTL are the multicast settings; zero values take the
	// kernel's defaults.
	Group netip.Addr
	// Port is the first UDP port.
	Port uint16
	// TTL is the multicast TTL.
	TTL uint8
}

// Daemons returns the master and the backup c asks for, in that order.
func (c SyncConfig) Daemons() [2]SyncDaemon {
	d := SyncDaemon{Interface: c.Interface, SyncID: c.SyncID, MaxLen: c.MaxLen, Group: c.Group, Port: c.Port, TTL: c.TTL}
	m, b := d, d
	m.State, b.State = SyncMaster, SyncBackup
	return [2]SyncDaemon{m, b}
}

// Settings are the namespace-wide IPVS settings the data plane keeps as the
// configuration says, next to the services: the sysctls and the sync
// daemons.
type Settings struct {
	// ManageSysctls sets the flow-continuity sysctls (and the sync sysctls
	// when Sync is set); false leaves every sysctl alone.
	ManageSysctls bool
	// Sysctls override single values under net.ipv4.vs.
	Sysctls map[string]int
	// Sync is the connection synchronization; nil stops the daemons this
	// process started and leaves any other alone.
	Sync *SyncConfig
}

// SyncStatus is what the kernel runs for connection synchronization.
type SyncStatus struct {
	// Configured says the configuration asks for synchronization.
	Configured bool
	// Daemons are the daemons the kernel runs, master first.
	Daemons []SyncDaemon
	// Error says why the configured daemons do not run as configured ("" when
	// they do).
	Error string
}

// Running returns the daemon of state s the kernel runs, if any.
func (st SyncStatus) Running(s SyncState) (SyncDaemon, bool) {
	for _, d := range st.Daemons {
		if d.State == s {
			return d, true
		}
	}
	return SyncDaemon{}, false
}

// SettingsReport is what the kernel holds after the data plane kept its
// settings.
type SettingsReport struct {
	// Sysctls are the managed sysctls as read back (vectors such as
	// sync_threshold are reported one name per value: sync_threshold,
	// sync_period).
	Sysctls map[string]int
	// Sync is the synchronization state.
	Sync SyncStatus
}
