//go:build linux && vm

package main

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/console"
	"github.com/anycast-director/director/console/consoletest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

var consoleShots = flag.String("console-shots", "", "folder for the console's screenshots with real IPVS (run the test binary with vmrun -out)")

// TestVMConsole is the console in real headless Chromium against the real
// directord with IPVS in the VM: the page shows both VIPs and every real
// server with the kernel's Maglev fingerprint and live connection numbers,
// follows a real server going down, a drain clicked in the page reaches the
// kernel, and a rollback preview shows the diff and the IPVS plan.
// Chromium takes minutes to start under emulation and starves everything
// else meanwhile, so it starts first, before the lab and the daemon.
func TestVMConsole(t *testing.T) {
	p := consoletest.Open(t, consoletest.Options{Start: 8 * time.Minute, Step: 3 * time.Minute, ShotDir: *consoleShots,
		Header: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:alice-pw-1"))}})
	p.Navigate("about:blank")
	l := newVMLab(t)
	// Chromium keeps the emulated CPUs busy: slower checks, so real servers
	// do not flap for want of CPU.
	l.checkInterval, l.checkTimeout = 2*time.Second, 1500*time.Millisecond
	kern, err := openIPVSReader(nsPath(l.director))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kern.close)
	l.writeConfig(2)
	d := l.startDaemon()
	waitKernel(t, kern, "web programmed with every real server", time.Minute, func(k map[string]kernelService) error {
		for _, rs := range rsAddr {
			if err := weightIs(webKey, rs, map[string]int{rsAddr[0]: 1, rsAddr[1]: 2, rsAddr[2]: 1}[rs])(k); err != nil {
				return err
			}
		}
		return nil
	})
	for range 4 { // established connections: active in IPVS
		lc := l.dialLong(webVIP)
		if _, err := lc.get(); err != nil {
			t.Fatal(err)
		}
	}
	stopTraffic := l.steadyRequests(webVIP)
	defer stopTraffic()

	s := startVMConsole(t, l.sock)
	p.Navigate(s.URL())

	// 1. Both VIPs, every real server, the kernel's fingerprint, live numbers.
	q, attr, all := consoletest.Q, consoletest.Attr, consoletest.AllPresent
	cell := func(row string) string { return row + " td" + attr("data-director", "vm1") }
	row := func(svc, rs string) string { return "tr" + attr("data-backend", svc+"/"+rs) }
	p.WaitJS("both VIPs advertised", all(cell("#vips tr"+attr("data-vip", webVIP))+`[data-state="advertised"]`,
		cell("#vips tr"+attr("data-vip", tunVIP))+`[data-state="advertised"]`))
	var up []string
	for _, rs := range rsAddr {
		up = append(up, cell(row("web", rs))+`[data-health="up"]`)
	}
	up = append(up, cell(row("tun", rsAddr[0]))+`[data-health="up"]`, cell(row("tun", rsAddr[1]))+`[data-health="up"]`)
	p.WaitJS("every real server up", all(up...))
	fp := webFingerprint(t, l.sock)
	p.WaitJS("web's fingerprint as the kernel's ("+fp+")", all(cell("#prints tr"+attr("data-service", "web"))+attr("data-fingerprint", fp)))
	p.WaitJS("active connections and new connections per second from IPVS", `[...document.querySelectorAll('tr[data-backend^="web/"] td[data-director="vm1"]')]
		.some(td => Number(td.dataset.active) > 0) && [...document.querySelectorAll('tr[data-backend^="web/"] td[data-director="vm1"]')]
		.some(td => Number(td.dataset.cps) > 0)`)
	p.JS(`location.hash = "#servers"`)
	p.Shot("console-vm-servers.png")

	// 2. A real server goes down.
	l.rs[2].stop()
	p.WaitJS("rs3 down", all(cell(row("web", rsAddr[2]))+`[data-health="down"]`))

	// 3. A drain clicked in the page reaches the kernel.
	p.JS(`document.querySelector(` + q(row("web", rsAddr[0])+` button[data-act="drain-backend"]`) + `).click()`)
	p.WaitJS("the confirmation dialog", `document.querySelector("#action-dialog").open`)
	p.JS(`document.querySelector("#act-reason").value = "vm test"`)
	p.JS(`document.querySelector("#act-confirm").click()`)
	p.WaitJS("the drain confirmed", `document.querySelector('#act-results [data-director="vm1"][data-ok="true"]')`)
	// Drained: weight 0, then deleted once idle after the drain delay.
	waitKernel(t, kern, "rs1 at weight 0 in web, or gone", time.Minute, func(k map[string]kernelService) error {
		if d, ok := k[webKey].dest(rsAddr[0]); ok && d.Weight != 0 {
			return fmt.Errorf("%s -> %s weight %d", webKey, rsAddr[0], d.Weight)
		}
		return nil
	})
	p.JS(`document.querySelector("#act-cancel").click()`)

	// 4. rs3 comes back and a reload adds it to tun; the rollback preview
	// shows the diff and that rs3 would leave tun's IPVS service.
	l.rs[2].start(t)
	p.WaitJS("rs3 up again", all(cell(row("web", rsAddr[2]))+`[data-health="up"]`))
	l.writeConfig(3)
	signalDaemon(t, d, syscall.SIGHUP)
	p.WaitJS("version 2 with rs3 in tun", `/v2 /.test(document.querySelector('#directors tr[data-director="vm1"]').innerText) && `+
		all(cell(row("tun", rsAddr[2]))+`[data-health="up"]`))
	waitKernel(t, kern, "rs3 in tun", time.Minute, weightIs(tunKey, rsAddr[2], 1))
	p.JS(`location.hash = "#history"`)
	preview := `#hist-list tr[data-version="1"] button[data-hist="preview"]`
	p.WaitJS("the history", all(preview))
	p.JS(`document.querySelector(` + q(preview) + `).click()`)
	p.WaitJS("the preview: the diff and the plan", `[...document.querySelectorAll("#hist-detail .diff .del")].some(e =>
		e.textContent.includes("- { address: `+labNet+`.13 }")) && [...document.querySelectorAll("#plan td")].some(e =>
		e.textContent.includes(`+q(tunVIP+":80 -> "+rsAddr[2])+`))`)
	p.Shot("console-vm-rollback-preview.png")
}

// steadyRequests sends a request through vip every 250 ms from the client
// (bounded: at most 2,000), so IPVS counts new connections while the page
// watches; the returned func stops it.
func (l *vmLab) steadyRequests(vip string) func() {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for range 2000 {
			select {
			case <-stop:
				return
			case <-t.C:
				l.get(vip) // failures show in the page, not here
			}
		}
	}()
	return func() { close(stop); <-done }
}

// webFingerprint reads web's IPVS fingerprint from the daemon's API.
func webFingerprint(t *testing.T, sock string) string {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := directorv1.NewDirectorClient(conn).GetStatus(ctx, &directorv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.GetServices() {
		if s.GetName() == "web" && s.GetFingerprint() != "" {
			return s.GetFingerprint()
		}
	}
	t.Fatalf("web has no fingerprint in %v", st.GetServices())
	return ""
}

// startVMConsole serves the console for the daemon's socket, with alice as
// an operate user.
func startVMConsole(t *testing.T, sock string) *console.Server {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-pw-1"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte(fmt.Sprintf("alice:%s:operate\n", hash)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := console.New(console.Options{Listen: "127.0.0.1:0", UsersFile: users, AllowActions: true, Poll: 2 * time.Second,
		Directors: []console.Target{{Name: "vm1", Addr: sock}},
		Dial: func(tg console.Target) (*grpc.ClientConn, error) {
			return grpc.NewClient("unix://"+tg.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	<-s.Ready()
	t.Cleanup(func() { cancel(); <-done })
	return s
}
