package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/anycast-director/director/config"
)

// The capabilities directord may need (linux/capability.h bit numbers). The
// systemd unit grants exactly these three; nothing else (CAP_SYS_ADMIN in
// particular) is ever needed.
const (
	capNetBindService = 10
	capNetAdmin       = 12
	capNetRaw         = 13
)

// capNeed is one capability the configuration needs, and for what.
type capNeed struct {
	name string
	bit  uint
	why  string
}

// neededCapabilities lists what cfg needs beyond an unprivileged process, given
// the first unprivileged port (net.ipv4.ip_unprivileged_port_start).
// CAP_NET_RAW is granted by the unit for SO_BINDTODEVICE on kernels before
// 5.7 but never required.
func neededCapabilities(cfg *config.Config, unprivilegedPortStart int) []capNeed {
	var out []capNeed
	if why := netAdminUse(cfg); why != "" {
		out = append(out, capNeed{"CAP_NET_ADMIN", capNetAdmin, why})
	}
	if why := lowPorts(cfg, unprivilegedPortStart); why != "" {
		out = append(out, capNeed{"CAP_NET_BIND_SERVICE", capNetBindService, why})
	}
	return out
}

// netAdminUse says what in cfg writes network configuration, or "".
func netAdminUse(cfg *config.Config) string {
	var uses []string
	for i := range cfg.Services {
		if cfg.Services[i].Forwarding != config.ForwardLocal {
			uses = append(uses, "program IPVS")
			break
		}
	}
	for _, v := range cfg.VIPs() {
		if !v.IsLoopback() {
			uses = append(uses, "bind VIPs on "+cfg.Director.VIPInterface)
			break
		}
	}
	if cfg.Director.Announce == config.AnnounceKernel {
		uses = append(uses, "write routes for the local routing daemon")
	}
	return strings.Join(uses, ", ")
}

// lowPorts names the listeners below the unprivileged port range, or "".
func lowPorts(cfg *config.Config, start int) string {
	var low []string
	check := func(what string, port int) {
		if port > 0 && port < start {
			low = append(low, fmt.Sprintf("%s on port %d", what, port))
		}
	}
	if b := cfg.BGP; b != nil {
		check("BGP", int(b.ListenPort)) // BFD's 3784 is above 1024
	}
	check("metrics", listenPort(cfg.Metrics.Listen))
	if cfg.API.TCP != nil {
		check("API", listenPort(cfg.API.TCP.Listen))
	}
	if len(low) == 0 {
		return ""
	}
	return "listen for " + strings.Join(low, ", ")
}

// listenPort returns the port of a host:port listen address (0 if none).
func listenPort(hostPort string) int {
	_, p, err := net.SplitHostPort(hostPort)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// checkCapabilities returns an error naming every capability cfg needs that
// the process does not have, with what needs it and how to grant it.
func checkCapabilities(cfg *config.Config) error {
	have, err := effectiveCapabilities()
	if err != nil {
		return nil // cannot tell (no /proc): let the operations themselves fail
	}
	var missing []string
	for _, n := range neededCapabilities(cfg, unprivilegedPortStart()) {
		if have&(1<<n.bit) == 0 {
			missing = append(missing, fmt.Sprintf("%s (to %s)", n.name, n.why))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("missing capabilit%s %s: run directord as root, or grant CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE (the packaged unit does: AmbientCapabilities= in directord.service)",
		map[bool]string{true: "y", false: "ies"}[len(missing) == 1], strings.Join(missing, ", "))
}

// effectiveCapabilities reads the process's effective capability set.
func effectiveCapabilities() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff line in /proc/self/status")
}

// unprivilegedPortStart reads net.ipv4.ip_unprivileged_port_start (1024 when
// it cannot be read, the kernel's default).
func unprivilegedPortStart() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 1024
	}
	return n
}
