//go:build linux && privileged

package routerconfig

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedFRRAcceptsGenerated loads every golden case's FRR output into
// real FRR 8.4 daemons (zebra, bgpd, bfdd, ospfd, ospf6d) in a fresh network
// namespace and checks that FRR took every line: vtysh applies the file without
// a single error, every generated command shows up in the running
// configuration (except those FRR hides because they equal its defaults), and
// no daemon logged an error.
func TestPrivilegedFRRAcceptsGenerated(t *testing.T) {
	for _, gc := range goldenCases() {
		t.Run(gc.name, func(t *testing.T) {
			out, err := Generate("frr", loadDir(t, gc.name), gc.opts)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			lab := netlab.New(t)
			rtr := lab.Namespace("rtr")
			// The OSPF cases name eth1 and eth2 (eth0 is unused); the link
			// toward the directors carries the router's own addresses
			// (update-source), so bgpd can open its sessions.
			peer := lab.Namespace("peer")
			for range 3 {
				lab.Link(rtr, nil, peer, nil)
			}
			for _, a := range updateSources(string(out)) {
				plen := "/24"
				if strings.Contains(a, ":") {
					plen = "/64"
				}
				rtr.AddAddr("eth1", a+plen)
			}
			conf := filepath.Join(lab.Dir(), "frr.conf")
			if err := os.WriteFile(conf, out, 0o644); err != nil {
				t.Fatal(err)
			}
			if res, err := exec.Command("vtysh", "--dryrun", "-f", conf).CombinedOutput(); err != nil || len(strings.TrimSpace(string(res))) > 0 {
				t.Fatalf("vtysh --dryrun rejected the configuration: %v\n%s", err, res)
			}
			daemons := []string{"zebra", "bgpd", "bfdd", "ospfd", "ospf6d"}
			frr := rtr.StartFRR("", daemons[1:]...)
			dir := frr.Dir
			res, err := exec.Command("vtysh", "--vty_socket", dir, "-f", conf).CombinedOutput()
			if err != nil || strings.Contains(string(res), "%") {
				t.Fatalf("FRR rejected lines of the generated configuration: %v\n%s\nconfiguration:\n%s", err, res, out)
			}
			running := vtysh(t, dir, "show running-config")
			for _, missing := range missingLines(string(out), running) {
				t.Errorf("FRR's running configuration lacks generated line %q", missing)
			}
			if gc.name != "ospf" {
				summary := vtysh(t, dir, "show bgp summary")
				for _, l := range strings.Split(string(out), "\n") {
					if f := strings.Fields(l); len(f) == 4 && f[0] == "neighbor" && f[2] == "remote-as" && !strings.Contains(summary, f[1]) {
						t.Errorf("show bgp summary lacks neighbor %s:\n%s", f[1], summary)
					}
				}
			}
			if gc.name == "md5-bfd" {
				// bgpd hands a session to bfdd only once it has a peer, so
				// check bgpd's view: MD5 on both MD5 neighbors, BFD only on
				// the one-hop session without GTSM (the multihop one and
				// the GTSM one cannot run the director's single-hop BFD).
				for n, bfd := range map[string]bool{"10.0.1.11": true, "10.255.0.12": false, "10.0.1.13": false} {
					nb := vtysh(t, dir, "show bgp neighbor "+n)
					if strings.Contains(nb, "BFD: Type:") != bfd {
						t.Errorf("show bgp neighbor %s: BFD on is %v, want %v:\n%s", n, !bfd, bfd, nb)
					}
					if n != "10.0.1.13" && !strings.Contains(nb, "Peer Authentication Enabled") {
						t.Errorf("show bgp neighbor %s lacks MD5:\n%s", n, nb)
					}
				}
			}
			for _, d := range daemons {
				if errs := logErrors(t, frr.Daemons[d].LogPath); len(errs) > 0 {
					t.Errorf("%s logged errors:\n%s", d, strings.Join(errs, "\n"))
				}
			}
			if t.Failed() {
				t.Logf("generated:\n%s\nrunning:\n%s", out, running)
			}
		})
	}
}

// TestPrivilegedBIRDAcceptsGenerated parses every golden case's BIRD output
// with `bird -p` and then runs BIRD 2 on it in a fresh namespace, checking that
// every generated protocol exists.
func TestPrivilegedBIRDAcceptsGenerated(t *testing.T) {
	for _, gc := range goldenCases() {
		t.Run(gc.name, func(t *testing.T) {
			out, err := Generate("bird", loadDir(t, gc.name), gc.opts)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			dir := t.TempDir()
			conf := filepath.Join(dir, "bird.conf")
			if err := os.WriteFile(conf, out, 0o644); err != nil {
				t.Fatal(err)
			}
			if res, err := exec.Command("bird", "-p", "-c", conf).CombinedOutput(); err != nil {
				t.Fatalf("bird -p rejected the configuration: %v\n%s\nconfiguration:\n%s", err, res, out)
			}
			lab := netlab.New(t)
			rtr, peer := lab.Namespace("rtr"), lab.Namespace("peer")
			for range 3 {
				lab.Link(rtr, nil, peer, nil)
			}
			protos, err := rtr.StartBIRD(string(out)).Birdc("show", "protocols")
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(out), "\n") {
				f := strings.Fields(l)
				if len(f) >= 3 && f[0] == "protocol" {
					name := f[len(f)-2]
					if !strings.Contains(protos, name) {
						t.Errorf("BIRD runs no protocol %s:\n%s", name, protos)
					}
				}
			}
		})
	}
}

// updateSources returns the distinct update-source addresses of an FRR
// configuration.
func updateSources(conf string) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range strings.Split(conf, "\n") {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "neighbor" && f[2] == "update-source" && !seen[f[3]] {
			seen[f[3]] = true
			out = append(out, f[3])
		}
	}
	return out
}

// frrHides reports generated lines that FRR accepts but does not show in its
// running configuration because they equal its defaults or are structure.
func frrHides(l string) bool {
	switch l {
	case "detect-multiplier 3", "transmit-interval 300", "receive-interval 300": // bfdd's defaults
		return true
	case "bgp default ipv4-unicast": // bgpd's default
		return true
	case "exit", "!", "exit-address-family":
		return true
	}
	return false
}

// missingLines returns the generated commands that the running configuration
// does not contain, ignoring comments, structure and default values.
func missingLines(generated, running string) []string {
	have := map[string]bool{}
	for _, l := range strings.Split(running, "\n") {
		have[strings.TrimSpace(l)] = true
	}
	var missing []string
	for _, l := range strings.Split(generated, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "!") || frrHides(l) {
			continue
		}
		if !have[l] {
			missing = append(missing, l)
		}
	}
	return missing
}

// logErrors returns the error lines of an FRR log ("[EC " codes, unknown
// commands), except zebra's notice that this kernel has no MPLS.
func logErrors(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var errs []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "Disabling MPLS support") {
			continue
		}
		if strings.Contains(l, "[EC ") || strings.Contains(l, "Unknown command") || strings.Contains(l, "No such command") {
			errs = append(errs, l)
		}
	}
	return errs
}

// vtysh runs show commands against the daemons whose vty sockets are in dir.
func vtysh(t *testing.T, dir string, cmds ...string) string {
	t.Helper()
	args := []string{"--vty_socket", dir}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("vtysh %v: %v\n%s", cmds, err, out)
	}
	return string(out)
}
