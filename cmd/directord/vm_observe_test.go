//go:build linux && vm

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/lab/observe"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// Readers of what the director really does: the kernel's IPVS tables
// (/proc/net/ip_vs in kernel list order, ipvsadm), directorctl and the
// metrics endpoint.

// ipvsReader reads /proc/net/ip_vs of the director's namespace through a
// file opened inside it, so polling needs no namespace switch and keeps
// working while the daemon is down.
type ipvsReader struct {
	mu sync.Mutex
	f  *os.File
}

func openIPVSReader(ns string) (*ipvsReader, error) {
	var f *os.File
	err := inNS(ns, func() error {
		var err error
		f, err = os.Open("/proc/thread-self/net/ip_vs")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open /proc/net/ip_vs of %s: %w", ns, err)
	}
	return &ipvsReader{f: f}, nil
}

func (r *ipvsReader) close() { r.f.Close() }

// read returns the services by "vip:port".
func (r *ipvsReader) read() (map[string]kernelService, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(r.f)
	if err != nil {
		return nil, err
	}
	tbl, err := observe.ParseProcIPVS(string(data))
	if err != nil {
		return nil, err
	}
	out := map[string]kernelService{}
	for key, svc := range tbl {
		ks := kernelService{Scheduler: svc.Scheduler}
		for _, d := range svc.Dests {
			ks.Dests = append(ks.Dests, kernelDest{Addr: d.Addr.String(), Fwd: d.Forward, Weight: d.Weight, Active: d.ActiveConn, Inactive: d.InActConn})
		}
		out[key] = ks
	}
	return out, nil
}

// ipvsadmEntry is one service as `ipvsadm -Ln` prints it.
type ipvsadmEntry struct {
	Header string   // "TCP 198.18.77.10:80 mh (mh-fallback,mh-port)"
	Dests  []string // "10.77.0.11:80 Route 1", sorted by ipvsadm
}

// ipvsadm runs `ipvsadm -Ln` in the director's namespace.
func (l *vmLab) ipvsadm() map[string]ipvsadmEntry {
	l.t.Helper()
	out := map[string]ipvsadmEntry{}
	cur := ""
	for _, line := range strings.Split(l.director.MustRun("ipvsadm", "-Ln"), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && (f[0] == "TCP" || f[0] == "UDP"):
			cur = f[1]
			out[cur] = ipvsadmEntry{Header: strings.Join(f, " ")}
		case len(f) >= 4 && f[0] == "->" && f[1] != "RemoteAddress:Port" && cur != "":
			s := out[cur]
			s.Dests = append(s.Dests, strings.Join(f[1:4], " "))
			out[cur] = s
		}
	}
	return out
}

// ipvsStats are the counters `ipvsadm -Ln --stats --exact` prints.
type ipvsStats struct {
	Conns, InPkts, OutPkts, InBytes, OutBytes uint64
}

// ipvsadmStats returns the counters of services ("198.18.77.10:80") and
// destinations ("198.18.77.10:80 -> 10.77.0.11:80").
func (l *vmLab) ipvsadmStats() map[string]ipvsStats {
	l.t.Helper()
	out := map[string]ipvsStats{}
	cur := ""
	for _, line := range strings.Split(l.director.MustRun("ipvsadm", "-Ln", "--stats", "--exact"), "\n") {
		f := strings.Fields(line)
		key := ""
		var nums []string
		switch {
		case len(f) == 7 && (f[0] == "TCP" || f[0] == "UDP"):
			cur, key, nums = f[1], f[1], f[2:]
		case len(f) == 7 && f[0] == "->" && cur != "":
			key, nums = cur+" -> "+f[1], f[2:]
		default:
			continue
		}
		var st ipvsStats
		for i, p := range []*uint64{&st.Conns, &st.InPkts, &st.OutPkts, &st.InBytes, &st.OutBytes} {
			v, err := strconv.ParseUint(nums[i], 10, 64)
			if err != nil {
				l.t.Fatalf("ipvsadm --stats line %q: %v", line, err)
			}
			*p = v
		}
		out[key] = st
	}
	return out
}

// ctlBuild is a directorctl binary and how long building it took.
type ctlBuild struct {
	path string
	took time.Duration
}

// ctlBinary builds directorctl once per test binary run, inside the VM, with
// the host's module and build caches (seen through the VM's overlay, so only
// the link step really runs). The binary stays in the VM's throwaway /tmp.
//
// `make test-vm` builds bin/directorctl on the host first and names it in
// DIRECTORCTL_BIN, which saves the minute an emulated build takes.
var ctlBinary = sync.OnceValues(func() (ctlBuild, error) {
	began := time.Now()
	if p := os.Getenv("DIRECTORCTL_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return ctlBuild{}, fmt.Errorf("DIRECTORCTL_BIN: %w", err)
		}
		return ctlBuild{path: p}, nil
	}
	dir, err := os.MkdirTemp("", "directorctl-vm")
	if err != nil {
		return ctlBuild{}, err
	}
	bin := filepath.Join(dir, "directorctl")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// -s -w: no symbol table and no DWARF, which makes the emulated link
	// step noticeably shorter; the tests do not debug directorctl.
	cmd := exec.CommandContext(ctx, goBin, "build", "-ldflags=-s -w", "-o", bin, "github.com/anycast-director/director/cmd/directorctl")
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GOTOOLCHAIN=local", "GOPROXY=off")
	if os.Getenv("HOME") == "" && os.Getenv("GOCACHE") == "" && os.Getenv("XDG_CACHE_HOME") == "" {
		cmd.Env = append(cmd.Env, "HOME=/root") // the VM runs tests as root
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return ctlBuild{}, fmt.Errorf("go build directorctl inside the VM: %v\n%s", err, out)
	}
	return ctlBuild{path: bin, took: time.Since(began)}, nil
})

// ctl runs directorctl against the daemon's socket.
func (l *vmLab) ctl(args ...string) (stdout, stderr string, code int) {
	l.t.Helper()
	bin, err := ctlBinary()
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command(bin.path, append([]string{"--socket", l.sock, "--timeout", "5s"}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	code = exitCode(l.t, cmd.Run())
	return o.String(), e.String(), code
}

// mustCtl is ctl that fails the test unless directorctl exits 0.
func (l *vmLab) mustCtl(args ...string) string {
	l.t.Helper()
	out, errOut, code := l.ctl(args...)
	if code != 0 {
		l.t.Fatalf("directorctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// status reads the status over the API socket (directorctl's -o json is
// made for jq, not for protojson; cmd/directorctl's TestJSONForJq covers it).
func (l *vmLab) status() (*directorv1.GetStatusResponse, error) {
	l.t.Helper()
	conn, err := grpc.NewClient("unix://"+l.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := directorv1.NewDirectorClient(conn).GetStatus(ctx, &directorv1.GetStatusRequest{})
	if err != nil {
		return nil, fmt.Errorf("GetStatus: %w", err)
	}
	return s, nil
}

// waitStatus polls the status until check passes.
func (l *vmLab) waitStatus(what string, timeout time.Duration, check func(*directorv1.GetStatusResponse) error) *directorv1.GetStatusResponse {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := l.status()
		if err == nil {
			if err = check(s); err == nil {
				return s
			}
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// statusService returns the named service.
func statusService(s *directorv1.GetStatusResponse, name string) *directorv1.Service {
	for _, svc := range s.GetServices() {
		if svc.GetName() == name {
			return svc
		}
	}
	return nil
}

// statusBackend returns a backend of a service by address.
func statusBackend(s *directorv1.GetStatusResponse, service, addr string) *directorv1.Backend {
	for _, b := range statusService(s, service).GetBackends() {
		if b.GetAddress() == addr {
			return b
		}
	}
	return nil
}

// statusVIP returns a VIP's status.
func statusVIP(s *directorv1.GetStatusResponse, vip string) *directorv1.VIP {
	for _, v := range s.GetVips() {
		if v.GetAddress() == vip {
			return v
		}
	}
	return nil
}

// scrape fetches the metrics page from inside the director's namespace.
func (l *vmLab) scrape() (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: nsDialer(nsPath(l.director)), DisableKeepAlives: true}}
	resp, err := c.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// metric returns the value of the series name{labels} (labels in any
// order, all of them given).
func metric(page, name string, labels map[string]string) (float64, error) {
	sc := bufio.NewScanner(strings.NewReader(page))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `\{([^}]*)\} (\S+)$`)
	pair := regexp.MustCompile(`(\w+)="([^"]*)"`)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		got := map[string]string{}
		for _, p := range pair.FindAllStringSubmatch(m[1], -1) {
			got[p[1]] = p[2]
		}
		if len(got) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if match {
			return strconv.ParseFloat(m[2], 64)
		}
	}
	return 0, errors.New("no series " + name + fmt.Sprint(labels))
}
