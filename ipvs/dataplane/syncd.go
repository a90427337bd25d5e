package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/anycast-director/director/ipvs"
)

// The IPVS generic netlink commands and attributes of the sync daemons
// (include/uapi/linux/ip_vs.h). moby/ipvs implements none of them.
const (
	ipvsCmdNewDaemon = 9  // IPVS_CMD_NEW_DAEMON
	ipvsCmdDelDaemon = 10 // IPVS_CMD_DEL_DAEMON
	ipvsCmdGetDaemon = 11 // IPVS_CMD_GET_DAEMON

	ipvsCmdAttrDaemon = 3 // IPVS_CMD_ATTR_DAEMON, nested

	daemonAttrState      = 1 // u32: IP_VS_STATE_MASTER or _BACKUP
	daemonAttrMcastIfn   = 2 // NUL-terminated string, at most 16 bytes
	daemonAttrSyncID     = 3 // u32
	daemonAttrSyncMaxLen = 4 // u16
	daemonAttrMcastGroup = 5 // u32, network order
	daemonAttrMcastGrp6  = 6 // 16 bytes
	daemonAttrMcastPort  = 7 // u16, host order
	daemonAttrMcastTTL   = 8 // u8
)

// syncKernel starts, stops and lists the sync daemons of one namespace. The
// real one speaks generic netlink; unit tests use a stateful fake.
type syncKernel interface {
	daemons() ([]ipvs.SyncDaemon, error)
	start(d ipvs.SyncDaemon) error
	stop(s ipvs.SyncState) error
	mtu(ifname string) (int, error)
	close() error
}

// genlSync is the syncKernel of a network namespace.
type genlSync struct {
	c      *genlConn
	nsPath string
}

func openSync(nsPath string) (syncKernel, error) {
	c, err := openGenl(nsPath)
	if err != nil {
		return nil, err
	}
	return &genlSync{c: c, nsPath: nsPath}, nil
}

func (g *genlSync) close() error { return g.c.close() }

// daemons dumps the running sync daemons (IPVS_CMD_GET_DAEMON).
func (g *genlSync) daemons() ([]ipvs.SyncDaemon, error) {
	replies, err := g.c.request(ipvsCmdGetDaemon, unix.NLM_F_DUMP, nil)
	if err != nil {
		return nil, fmt.Errorf("list IPVS sync daemons: %w", err)
	}
	return decodeDaemons(replies), nil
}

// start starts one daemon (IPVS_CMD_NEW_DAEMON).
func (g *genlSync) start(d ipvs.SyncDaemon) error {
	_, err := g.c.request(ipvsCmdNewDaemon, 0, encodeDaemon(d))
	if err != nil {
		return fmt.Errorf("start IPVS sync daemon %s: %w%s", d, err, startHint(d, err))
	}
	return nil
}

// stop stops the daemon of state s (IPVS_CMD_DEL_DAEMON).
func (g *genlSync) stop(s ipvs.SyncState) error {
	a := nlAttr(daemonAttrState, binary.NativeEndian.AppendUint32(nil, uint32(s)))
	if _, err := g.c.request(ipvsCmdDelDaemon, 0, nlAttr(ipvsCmdAttrDaemon|unix.NLA_F_NESTED, a)); err != nil {
		return fmt.Errorf("stop IPVS sync daemon %s: %w", s, err)
	}
	return nil
}

// mtu reads an interface's MTU in the namespace (a backup's default message
// size follows it).
func (g *genlSync) mtu(ifname string) (int, error) {
	var mtu int
	err := inNetns(g.nsPath, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mtu = ifi.MTU
		return nil
	})
	return mtu, err
}

// startHint explains the kernel's refusals of IPVS_CMD_NEW_DAEMON.
func startHint(d ipvs.SyncDaemon, err error) string {
	switch {
	case errors.Is(err, syscall.ENODEV):
		return fmt.Sprintf(" (there is no interface %q in this network namespace: set ipvs.sync.interface to the interface the directors share)", d.Interface)
	case errors.Is(err, syscall.EEXIST):
		return " (a daemon of this state runs already)"
	case errors.Is(err, syscall.EINVAL):
		return " (the kernel refuses the settings; IPVS services with destinations of another address family also stop synchronization)"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Sprintf(" (interface %q has no address of the group's family to send from)", d.Interface)
	}
	return ""
}

// encodeDaemon is the nested IPVS_CMD_ATTR_DAEMON for d; zero settings are
// left out so the kernel picks its defaults.
func encodeDaemon(d ipvs.SyncDaemon) []byte {
	var a []byte
	a = append(a, nlAttr(daemonAttrState, binary.NativeEndian.AppendUint32(nil, uint32(d.State)))...)
	a = append(a, nlAttr(daemonAttrMcastIfn, append([]byte(d.Interface), 0))...)
	a = append(a, nlAttr(daemonAttrSyncID, binary.NativeEndian.AppendUint32(nil, uint32(d.SyncID)))...)
	if d.MaxLen != 0 {
		a = append(a, nlAttr(daemonAttrSyncMaxLen, binary.NativeEndian.AppendUint16(nil, d.MaxLen))...)
	}
	switch {
	case d.Group.Is4():
		g := d.Group.As4()
		a = append(a, nlAttr(daemonAttrMcastGroup, g[:])...)
	case d.Group.Is6():
		g := d.Group.As16()
		a = append(a, nlAttr(daemonAttrMcastGrp6, g[:])...)
	}
	if d.Port != 0 {
		a = append(a, nlAttr(daemonAttrMcastPort, binary.NativeEndian.AppendUint16(nil, d.Port))...)
	}
	if d.TTL != 0 {
		a = append(a, nlAttr(daemonAttrMcastTTL, []byte{d.TTL})...)
	}
	return nlAttr(ipvsCmdAttrDaemon|unix.NLA_F_NESTED, a)
}

// decodeDaemons reads the daemons of a GET_DAEMON dump, master first.
func decodeDaemons(replies [][]byte) []ipvs.SyncDaemon {
	var out []ipvs.SyncDaemon
	for _, r := range replies {
		for _, top := range parseAttrs(r) {
			if top.typ != ipvsCmdAttrDaemon {
				continue
			}
			if d, ok := decodeDaemon(parseAttrs(top.data)); ok {
				out = append(out, d)
			}
		}
	}
	if len(out) == 2 && out[0].State == ipvs.SyncBackup {
		out[0], out[1] = out[1], out[0]
	}
	return out
}

// decodeDaemon reads one daemon's attributes.
func decodeDaemon(attrs []attr) (ipvs.SyncDaemon, bool) {
	var d ipvs.SyncDaemon
	for _, a := range attrs {
		switch {
		case a.typ == daemonAttrState && len(a.data) >= 4:
			d.State = ipvs.SyncState(binary.NativeEndian.Uint32(a.data))
		case a.typ == daemonAttrMcastIfn:
			d.Interface = cString(a.data)
		case a.typ == daemonAttrSyncID && len(a.data) >= 4:
			d.SyncID = uint8(binary.NativeEndian.Uint32(a.data))
		case a.typ == daemonAttrSyncMaxLen && len(a.data) >= 2:
			d.MaxLen = binary.NativeEndian.Uint16(a.data)
		case a.typ == daemonAttrMcastGroup && len(a.data) >= 4:
			d.Group = netip.AddrFrom4([4]byte(a.data[:4]))
		case a.typ == daemonAttrMcastGrp6 && len(a.data) >= 16:
			d.Group = netip.AddrFrom16([16]byte(a.data[:16]))
		case a.typ == daemonAttrMcastPort && len(a.data) >= 2:
			d.Port = binary.NativeEndian.Uint16(a.data)
		case a.typ == daemonAttrMcastTTL && len(a.data) >= 1:
			d.TTL = a.data[0]
		}
	}
	return d, d.State == ipvs.SyncMaster || d.State == ipvs.SyncBackup
}

// cString is b up to its first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
