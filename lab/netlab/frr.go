package netlab

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// frrBin is where Debian's frr package installs the daemons.
const frrBin = "/usr/lib/frr"

// FRR is a set of FRR daemons running in one namespace, with their own folder
// (vty sockets, zserv socket, pid files, logs) owned by the frr user.
type FRR struct {
	ns *NS
	// Dir is the daemons' private folder; pass it to vtysh as --vty_socket.
	Dir string
	// Daemons are the running daemons by name ("zebra", "bgpd", ...).
	Daemons map[string]*Proc
}

// StartFRR starts zebra and the given daemons ("bgpd", "bfdd", "ospfd",
// "staticd") as user frr in the namespace, then loads config, an integrated
// frr.conf, through vtysh. The daemons are killed at cleanup.
func (ns *NS) StartFRR(config string, daemons ...string) *FRR {
	t := ns.lab.t
	t.Helper()
	u, err := user.Lookup("frr")
	if err != nil {
		t.Fatalf("netlab: FRR needs the frr user (apt-get install frr): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	f := &FRR{ns: ns, Dir: ns.lab.subdir("frr-"+ns.Short, uid, gid), Daemons: make(map[string]*Proc)}
	for _, d := range append([]string{"zebra"}, daemons...) {
		conf := filepath.Join(f.Dir, d+".conf")
		if err := os.WriteFile(conf, nil, 0o640); err != nil {
			t.Fatalf("netlab: write %s: %v", conf, err)
		}
		if err := os.Chown(conf, uid, gid); err != nil {
			t.Fatalf("netlab: chown %s: %v", conf, err)
		}
		argv := []string{
			filepath.Join(frrBin, d),
			"-f", conf,
			"-i", filepath.Join(f.Dir, d+".pid"),
			"-z", filepath.Join(f.Dir, "zserv.api"),
			"--vty_socket", f.Dir,
			"-u", "frr", "-g", "frr",
			"--log", "file:" + filepath.Join(f.Dir, d+".log"),
		}
		if d == "bfdd" {
			argv = append(argv, "--bfdctl", filepath.Join(f.Dir, "bfdd.sock"))
		}
		f.Daemons[d] = ns.Start(ns.Short+"/"+d, nil, argv...)
		// Every daemon answers on its vty socket once it is ready; zebra
		// must be up before the others connect to it.
		sock := filepath.Join(f.Dir, d+".vty")
		if _, err := Wait(10*time.Second, 20*time.Millisecond, func() error {
			if f.Daemons[d].Exited() {
				return fmt.Errorf("%s exited: %s", d, f.Daemons[d].Output())
			}
			if _, err := os.Stat(sock); err != nil {
				return fmt.Errorf("no vty socket yet: %w", err)
			}
			return nil
		}); err != nil {
			t.Fatalf("netlab: start %s in %s: %v", d, ns.Name, err)
		}
	}
	if config != "" {
		f.Configure(config)
	}
	return f
}

// Configure applies configuration commands (frr.conf syntax) to the running
// daemons through vtysh.
func (f *FRR) Configure(config string) {
	t := f.ns.lab.t
	t.Helper()
	path := filepath.Join(f.Dir, fmt.Sprintf("apply-%d.conf", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatalf("netlab: write %s: %v", path, err)
	}
	out, err := exec.Command("vtysh", "--vty_socket", f.Dir, "-f", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "% ") {
		t.Fatalf("netlab: vtysh -f %s in %s: %v\n%s\nconfig:\n%s", path, f.ns.Name, err, out, config)
	}
}

// Vtysh runs one or more vtysh commands and returns the output. A vtysh
// that cannot reach the daemons is retried a few times: on a loaded machine a
// busy daemon's vty socket occasionally refuses a connection, which is not
// what a test asserts on.
func (f *FRR) Vtysh(commands ...string) (string, error) {
	args := []string{"--vty_socket", f.Dir}
	for _, c := range commands {
		args = append(args, "-c", c)
	}
	var out []byte
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		out, err = exec.Command("vtysh", args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "failed to connect") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return string(out), fmt.Errorf("vtysh %q in %s: %w: %s", commands, f.ns.Name, err, out)
	}
	return string(out), nil
}

// VtyshJSON runs a "show ... json" command and decodes its output into v.
func (f *FRR) VtyshJSON(command string, v any) error {
	out, err := f.Vtysh(command)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("decode %q output: %w: %s", command, err, tail(out, 10))
	}
	return nil
}

// BGPNeighbor is one entry of `show bgp neighbors json`.
type BGPNeighbor struct {
	RemoteAS int    `json:"remoteAs"`
	State    string `json:"bgpState"` // "Established", "Active", "Idle", ...
	// UpMsec is how long the session has been established.
	UpMsec int64 `json:"bgpTimerUpMsec"`
	// Established and Dropped count sessions since the neighbor was
	// configured: a flapping session raises both.
	Established int    `json:"connectionsEstablished"`
	Dropped     int    `json:"connectionsDropped"`
	LastReset   string `json:"lastResetDueTo"`
	// LastNotification is the last NOTIFICATION sent or received, such as
	// "Cease/Administrative Shutdown"; LastShutdownMessage is its RFC 9003
	// text.
	LastNotification    string `json:"lastNotificationReason"`
	LastShutdownMessage string `json:"lastShutdownDescription"`
	// BFD is present when the neighbor has BFD configured.
	BFD *struct {
		Status string `json:"status"` // "Up", "Down", "Unknown"
	} `json:"peerBfdInfo"`
}

// BGPNeighbors returns the router's BGP neighbors by address.
func (f *FRR) BGPNeighbors() (map[string]BGPNeighbor, error) {
	var n map[string]BGPNeighbor
	if err := f.VtyshJSON("show bgp neighbors json", &n); err != nil {
		return nil, err
	}
	return n, nil
}

// BGPPath is one path of `show bgp <afi> unicast <prefix> json`, with the
// attributes tests assert on: AS path, communities (FRR spells 65535:0 as
// "graceful-shutdown"), MED ("metric"), local preference, whether the path
// is valid, part of the multipath set or the best path, the peer it came
// from and its next hops.
type BGPPath struct {
	ASPath struct {
		String string `json:"string"`
	} `json:"aspath"`
	Community *struct {
		String string `json:"string"` // "65100:10 graceful-shutdown"
	} `json:"community"`
	LargeCommunity *struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	MED       *uint32 `json:"metric"`
	LocalPref *uint32 `json:"locPrf"`
	Valid     bool    `json:"valid"`
	Multipath bool    `json:"multipath"`
	BestPath  *struct {
		Overall bool `json:"overall"`
	} `json:"bestpath"`
	Peer struct {
		PeerID string `json:"peerId"`
	} `json:"peer"`
	NextHops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
}

// Communities returns the path's standard communities as FRR prints them.
func (p BGPPath) Communities() string {
	if p.Community == nil {
		return ""
	}
	return p.Community.String
}

// BGPRoute returns the router's paths for a prefix ("198.18.0.10/32" or an
// IPv6 prefix); no paths means the router does not know the prefix.
func (f *FRR) BGPRoute(prefix string) ([]BGPPath, error) {
	afi := "ipv4"
	if strings.Contains(prefix, ":") {
		afi = "ipv6"
	}
	var r struct {
		Paths []BGPPath `json:"paths"`
	}
	if err := f.VtyshJSON(fmt.Sprintf("show bgp %s unicast %s json", afi, prefix), &r); err != nil {
		return nil, err
	}
	return r.Paths, nil
}

// PID returns the PID of a daemon, or 0 when it is not running.
func (f *FRR) PID(daemon string) int {
	if p := f.Daemons[daemon]; p != nil && !p.Exited() {
		return p.PID
	}
	return 0
}
