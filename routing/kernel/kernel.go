// Package kernel is the director's only importer of github.com/vishvananda/netlink.
// It does two jobs:
//
//   - VIPs binds the VIPs to the local VIP interface (lo, or a dummy device where
//     the kernel has one) so IPVS and local services receive their traffic:
//     as addresses, or as "local" routes in the kernel's local table, which a
//     routing daemon on the director does not mistake for connected routes
//     (FRR's zebra would let such a connected route beat the Advertiser's).
//   - Advertiser is the OSPF (or any local routing daemon) path of
//     routing.Advertiser: a VIP is advertised by a host route in a dedicated
//     routing table with a dedicated route protocol number, which a local FRR or
//     BIRD redistributes, and withdrawn by deleting that route. The VIP stays
//     bound while only its advertisement comes and goes, so a draining director
//     keeps forwarding.
//
// # Ownership
//
// Both types share the kernel with operators and other daemons, so each only
// touches what carries its mark, and the mark lives in the kernel: it survives a
// daemon restart, and a new value adopts what an earlier process left behind
// without any state file.
//
//   - Addresses carry the address protocol attribute IFA_PROTO (Linux 6.1 and
//     later), the kernel's field for "who added this address", set to the
//     configured protocol number (config.Kernel.Protocol). It works for IPv4 and
//     IPv6 alike, unlike an address label (IPv4 only). An IPv4 VIP also gets the
//     label "<interface>:vip" when it fits, only so that operators with an
//     iproute2 older than 6.2 (which does not print the protocol) can tell our
//     addresses apart in `ip addr`; ownership is decided by the protocol alone.
//     A kernel that drops the attribute (older than 6.1) is detected after the
//     first add and reported as an error instead of losing track of addresses.
//   - Routes carry the route protocol number (rtm_protocol): the Advertiser's
//     in the configured table, local-route VIPs in the local table; routes
//     with any other protocol are left alone.
//
// All netlink traffic goes through handles opened for an explicit network
// namespace (the process's own, or a named one for tests), never through the
// netlink package-level functions, and every dump is retried a bounded number of
// times when the kernel reports it as interrupted.
package kernel

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds the retries of one netlink dump interrupted by a
// concurrent change (NLM_F_DUMP_INTR). Changes that fast are rare; five tries
// make a persistent failure an error instead of a hang.
const dumpAttempts = 5

// socketTimeout bounds every netlink request, so a wedged socket fails the
// reconcile pass instead of blocking the announcer loop forever.
const socketTimeout = 5 * time.Second

// checkProtocol rejects protocol numbers that would make us own addresses or
// routes that belong to the kernel or to the routing daemon: 0-4 are the
// kernel's (unspec, redirect, kernel, boot, static for routes; the same range
// covers IFAPROT_UNSPEC, _KERNEL_LO, _RA and _LL for addresses, and ::1 carries
// 1), 11 and 186-198 are FRR's, whose zebra deletes such routes on start, and 12
// is BIRD's.
func checkProtocol(p int) error {
	switch {
	case p < 0 || p > 255:
		return fmt.Errorf("protocol %d is out of range: use 5..255 (kernel.protocol in the config, default 250)", p)
	case p <= 4:
		return fmt.Errorf("protocol %d is reserved for the kernel's own addresses and routes: pick another kernel.protocol (default 250)", p)
	case p == 11 || (p >= 186 && p <= 198):
		return fmt.Errorf("protocol %d belongs to FRR, whose zebra deletes such routes on start: pick another kernel.protocol (default 250)", p)
	case p == 12:
		return fmt.Errorf("protocol %d belongs to BIRD: pick another kernel.protocol (default 250)", p)
	}
	return nil
}

// checkTable rejects the kernel's reserved tables other than main. The main table
// (254) is allowed: FRR reads it with "redistribute kernel" (docs/ospf.md).
func checkTable(t int) error {
	switch {
	case t <= 0:
		return fmt.Errorf("routing table %d is invalid: use 1..252 (a dedicated table) or 254 (main)", t)
	case t == unix.RT_TABLE_DEFAULT || t == unix.RT_TABLE_LOCAL:
		return fmt.Errorf("routing table %d is reserved by the kernel (default 253, local 255): use 1..252 or 254", t)
	}
	return nil
}

// nlConn is the pair of netlink endpoints for one network namespace: the
// library's handle for links and routes, and a raw route socket in the same
// namespace for the address requests that need IFA_PROTO, which the library's
// Addr type does not carry.
type nlConn struct {
	h    *netlink.Handle
	sock *nl.SocketHandle
}

// openNetlink opens the netlink endpoints in the network namespace whose file is
// at nsPath ("/run/netns/NAME", "/proc/PID/ns/net"), or in the process's own
// namespace when nsPath is empty.
//
// Entering a namespace (setns) needs CAP_SYS_ADMIN, which the daemon does not
// have under its systemd unit; so when the calling thread already is in the
// target namespace, the sockets are opened right there without a setns.
func openNetlink(nsPath string) (*nlConn, error) {
	target, err := namespaceHandle(nsPath)
	if err != nil {
		return nil, err
	}
	// The handle and the socket keep their own references to the namespace.
	defer target.Close()
	// Pin the goroutine to its thread so that "this thread's namespace" stays
	// true between the comparison and the socket calls.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns := target
	if cur, err := netns.Get(); err == nil {
		if cur.Equal(target) {
			ns = netns.None() // already there: open in place, no setns
		}
		cur.Close()
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w%s", err, setnsHint(err))
	}
	sock, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open netlink route socket: %w%s", err, setnsHint(err))
	}
	tv := unix.NsecToTimeval(socketTimeout.Nanoseconds())
	err = errors.Join(h.SetSocketTimeout(socketTimeout), sock.SetSendTimeout(&tv), sock.SetReceiveTimeout(&tv))
	if err != nil {
		h.Close()
		sock.Close()
		return nil, fmt.Errorf("set netlink socket timeouts: %w", err)
	}
	return &nlConn{h: h, sock: &nl.SocketHandle{Socket: sock}}, nil
}

// namespaceHandle opens the namespace file at nsPath, or the process's own
// namespace for "" (explicitly, so that a thread a test or a library left in
// another namespace cannot mislead us).
func namespaceHandle(nsPath string) (netns.NsHandle, error) {
	if nsPath == "" {
		self, err := netns.GetFromPid(unix.Getpid())
		if err != nil {
			return netns.None(), fmt.Errorf("open the process's network namespace: %w", err)
		}
		return self, nil
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return netns.None(), fmt.Errorf("open network namespace %s: %w (does the namespace exist?)", nsPath, err)
	}
	return ns, nil
}

// setnsHint names the missing privilege when entering a namespace failed.
func setnsHint(err error) string {
	if errors.Is(err, unix.EPERM) {
		return " (entering another network namespace needs CAP_SYS_ADMIN)"
	}
	return ""
}

// close releases both endpoints.
func (c *nlConn) close() {
	c.h.Close()
	c.sock.Close()
}

// retryDump runs a netlink dump until it completes without the kernel's
// "interrupted" flag, at most dumpAttempts times.
func retryDump[T any](what string, dump func() (T, error)) (T, error) {
	var zero T
	for attempt := 1; ; attempt++ {
		v, err := dump()
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return zero, fmt.Errorf("%s: %w", what, err)
		}
		if attempt == dumpAttempts {
			return zero, fmt.Errorf("%s: interrupted by concurrent changes %d times in a row; retry later: %w", what, attempt, err)
		}
	}
}
