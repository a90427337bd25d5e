package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/lab/observe"
	"github.com/anycast-director/director/lab/runner"
	"github.com/anycast-director/director/lab/topology"
	"github.com/anycast-director/director/lab/traffic"
)

// roles are the lab's nodes by what they run, read from the topology: the
// directors run directord, the real servers labserver, the router FRR's
// image; the client is the node left.
type roles struct {
	router, client     string
	directors, servers []string
	// addr is each director's and real server's LAN address, vip and
	// ports the web and echo services, from the first director's config.
	addr            map[string]string
	vip             string
	webPort, echoPt uint16
}

func findRoles(t *runner.Topology) (roles, error) {
	r := roles{addr: map[string]string{}}
	var cfgPath string
	for _, n := range t.Nodes {
		switch {
		case n.Kind != runner.KindLinux:
		case strings.HasPrefix(n.Image, topology.FRRImage+":"):
			r.router = n.Name
		case len(n.Cmd) > 0 && n.Cmd[0] == "directord":
			r.directors = append(r.directors, n.Name)
			for _, b := range n.Binds {
				if b.Target == "/etc/directord/directord.yaml" && cfgPath == "" {
					cfgPath = b.Source
				}
			}
		case len(n.Cmd) > 0 && n.Cmd[0] == "labserver":
			r.servers = append(r.servers, n.Name)
		default:
			r.client = n.Name
		}
	}
	if r.router == "" || r.client == "" || len(r.directors) == 0 || len(r.servers) == 0 || cfgPath == "" {
		return r, fmt.Errorf("the topology lacks a router, client, directors or real servers: %+v", r)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return r, err
	}
	for _, s := range cfg.Services {
		r.vip = s.VIP.String()
		switch s.Name {
		case "web":
			r.webPort = s.Port
		case "echo":
			r.echoPt = s.Port
		}
	}
	if r.webPort == 0 || r.echoPt == 0 {
		return r, fmt.Errorf("%s has no web and echo services", cfgPath)
	}
	// Addresses: the "ip addr add A/N dev eth1" exec line of each node.
	for _, n := range t.Nodes {
		for _, argv := range n.Exec {
			if len(argv) >= 4 && argv[0] == "ip" && argv[1] == "addr" && argv[2] == "add" {
				a, _, _ := strings.Cut(argv[3], "/")
				if strings.HasPrefix(a, "10.") {
					r.addr[n.Name] = a
				}
			}
		}
	}
	return r, nil
}

func (r roles) directorAddrs(except string) []string {
	var out []string
	for _, d := range r.directors {
		if d != except {
			out = append(out, r.addr[d])
		}
	}
	return out
}

// demo is the part that runs in the VM.
func demo(ctx context.Context, topoPath, bin string, w io.Writer) error {
	say := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	header := func(title string) { fmt.Fprintf(w, "\n===== %s =====\n", title) }
	t, err := runner.Load(topoPath)
	if err != nil {
		return err
	}
	r, err := findRoles(t)
	if err != nil {
		return err
	}
	header("Deploying " + filepath.Base(topoPath) + " in network namespaces")
	start := time.Now()
	lab, err := runner.Deploy(ctx, t, runner.Options{Images: topology.Images(bin)})
	if err != nil {
		return err
	}
	defer func() {
		lab.Destroy()
		say("\nlab removed (every process and namespace)")
	}()
	deployed := time.Since(start)
	say("nodes: router %s, client %s, directors %s, real servers %s", r.router, r.client, strings.Join(r.directors, " "), strings.Join(r.servers, " "))
	took, err := observe.WaitNextHops(ctx, lab, r.router, r.vip, r.directorAddrs(""), 3*time.Minute)
	if err != nil {
		return err
	}
	say("deployed in %s; the router had an ECMP route over every director %s later", deployed.Round(100*time.Millisecond), took.Round(100*time.Millisecond))
	show := func(node string, argv ...string) {
		out, err := lab.Exec(ctx, node, argv...)
		if err != nil {
			say("%s: %v", node, err)
			return
		}
		fmt.Fprintf(w, "%s# %s\n%s", node, strings.Join(argv, " "), out)
	}

	header("The router's route to the VIP")
	show(r.router, "ip", "route", "show", r.vip)

	header("Client traffic: 300 HTTP requests through the VIP, each a new connection")
	before, err := webConns(ctx, lab, r)
	if err != nil {
		return err
	}
	c, err := observe.StartClient(lab, r.client, "spread", "http", "-url", fmt.Sprintf("http://%s:%d/", r.vip, r.webPort), "-n", "300", "-rate", "50")
	if err != nil {
		return err
	}
	var spread traffic.HTTPResult
	if err := c.Wait(2*time.Minute, &spread); err != nil {
		return err
	}
	time.Sleep(2500 * time.Millisecond) // IPVS folds its counters every 2 s
	after, err := webConns(ctx, lab, r)
	if err != nil {
		return err
	}
	say("%d answered, %d failed; answers by real server: %s", spread.OK, spread.Failed, counts(spread.ByServer))
	say("\nnew connections per director (rows) and real server (columns), from each director's IPVS counters:")
	fmt.Fprintf(w, "%-8s", "")
	for _, s := range r.servers {
		fmt.Fprintf(w, "%8s", s)
	}
	fmt.Fprintf(w, "%8s\n", "total")
	for _, d := range r.directors {
		fmt.Fprintf(w, "%-8s", d)
		var tot uint64
		for _, s := range r.servers {
			n := after[d][s] - before[d][s]
			tot += n
			fmt.Fprintf(w, "%8d", n)
		}
		fmt.Fprintf(w, "%8d\n", tot)
	}

	for _, d := range r.directors {
		header(d + ": IPVS table and directorctl status")
		show(d, "ipvsadm", "-Ln", "--stats")
		show(d, "directorctl", "status")
	}

	header("Failures while traffic flows")
	say("steady HTTP requests (20/s; per-second counts below) and 100 long-lived echo connections")
	load, err := observe.StartClient(lab, r.client, "load", "http", "-url", fmt.Sprintf("http://%s:%d/", r.vip, r.webPort), "-rate", "20", "-progress", "1s")
	if err != nil {
		return err
	}
	hold, err := observe.StartClient(lab, r.client, "hold", "hold", "-addr", fmt.Sprintf("%s:%d", r.vip, r.echoPt), "-conns", "100")
	if err != nil {
		return err
	}
	if _, _, err := hold.WaitReady(2 * time.Minute); err != nil {
		return err
	}
	tailCtx, stopTail := context.WithCancel(ctx)
	defer stopTail()
	tailDone := make(chan struct{})
	go func() { defer close(tailDone); tail(tailCtx, load.Proc().LogPath, w, "  traffic  ") }()
	time.Sleep(4 * time.Second)

	victimRS := r.servers[len(r.servers)/2]
	say(">>> killing %s's service (labserver): its requests fail until the directors' health checks take it out", victimRS)
	for _, p := range lab.Procs(victimRS) {
		p.Kill()
	}
	time.Sleep(8 * time.Second)
	show(r.directors[0], "ipvsadm", "-Ln")

	victimD := r.directors[len(r.directors)-1]
	say(">>> killing director %s (all its processes and its namespace, like a dead container)", victimD)
	t0 := time.Now()
	if err := lab.StopNode(victimD); err != nil {
		return err
	}
	if d, err := observe.WaitNextHops(ctx, lab, r.router, r.vip, r.directorAddrs(victimD), 30*time.Second); err != nil {
		return err
	} else {
		say(">>> the router dropped %s from its route in %s", victimD, d.Round(10*time.Millisecond))
	}
	show(r.router, "ip", "route", "show", r.vip)
	time.Sleep(time.Until(t0.Add(8 * time.Second)))
	stopTail()
	<-tailDone
	var res traffic.HTTPResult
	if err := load.Stop(&res); err != nil {
		return err
	}
	var held traffic.HoldResult
	if err := hold.Stop(&held); err != nil {
		return err
	}

	header("Summary")
	say("requests: %d sent, %d answered, %d failed; answers by real server: %s", res.Sent, res.OK, res.Failed, counts(res.ByServer))
	if res.Failed > 0 {
		say("  the failed requests went to %s between its death and the health checks' verdict (%s to %s)",
			victimRS, res.Failures[0].Started.Format("15:04:05.0"), res.Failures[len(res.Failures)-1].Started.Format("15:04:05.0"))
	}
	onVictim, others := 0, 0
	for _, b := range held.Breaks {
		if b.Server == victimRS {
			onVictim++
		} else {
			others++
		}
	}
	say("long-lived connections: %d opened, %d broken: %d of the %d served by %s (they died with it), %d others",
		held.Opened, held.Broken, onVictim, held.ByServer[victimRS], victimRS, others)
	if others == 0 {
		say("  director %s's death broke no connection: its flows moved to the surviving directors, which picked the same real servers", victimD)
	}
	show(r.router, "ip", "route", "show", r.vip)
	show(r.directors[0], "directorctl", "status")
	return nil
}

// webConns reads each director's IPVS connection counters for the web
// service, by real server.
func webConns(ctx context.Context, lab *runner.Lab, r roles) (map[string]map[string]uint64, error) {
	out := map[string]map[string]uint64{}
	for _, d := range r.directors {
		st, err := observe.IPVSStats(ctx, lab, d)
		if err != nil {
			return nil, err
		}
		out[d] = map[string]uint64{}
		for _, s := range r.servers {
			if dst := st[fmt.Sprintf("%s:%d", r.vip, r.webPort)].Dest(fmt.Sprintf("%s:%d", r.addr[s], r.webPort)); dst != nil {
				out[d][s] = dst.Conns
			}
		}
	}
	return out, nil
}

func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// tail prints the lines appended to a file until ctx ends.
func tail(ctx context.Context, path string, w io.Writer, prefix string) {
	var off int64
	var partial string
	for {
		if data, err := os.ReadFile(path); err == nil && int64(len(data)) > off {
			chunk := partial + string(data[off:])
			off = int64(len(data))
			lines := strings.Split(chunk, "\n")
			partial = lines[len(lines)-1]
			for _, l := range lines[:len(lines)-1] {
				if strings.HasPrefix(l, "t=") {
					fmt.Fprintf(w, "%s%s\n", prefix, l)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}
