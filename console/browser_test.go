package console

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// chromiumPath is Debian's chromium (scripts/deps.sh installs it).
const chromiumPath = "/usr/bin/chromium"

var screenshots = flag.Bool("screenshots", false, "write the console's screenshots into ../docs (for docs/console.md)")

// browser starts a headless Chromium with a fresh profile that sends
// header on every request, and returns a tab's context.
func browser(t *testing.T, header map[string]string) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s: %v: install Debian's chromium (bash scripts/deps.sh test)", chromiumPath, err)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // tests run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000))
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	headers := network.Headers{}
	for k, v := range header {
		headers[k] = v
	}
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: headers})
		return err
	}))
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// page drives one tab: every step waits on a condition of the DOM.
type page struct {
	t   *testing.T
	ctx context.Context
}

// waitJS waits until the JavaScript expression is true (bounded).
func (p page) waitJS(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")", chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		html, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.querySelector("main").textContent.replace(/\s+/g, " ")`))
		p.t.Fatalf("the page never showed %s (%v); it shows:\n%s", what, err, html)
	}
}

// js runs a statement in the page.
func (p page) js(expr string) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[any](`(() => { `+expr+`; return null; })()`)); err != nil && err != chromedp.ErrJSNull {
		p.t.Fatalf("%s: %v", expr, err)
	}
}

// shot saves a screenshot of the whole page as name (in docs/ with
// -screenshots, else in a temporary folder).
func (p page) shot(name string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := p.t.TempDir()
	if *screenshots {
		dir = "../docs"
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// sel quotes a CSS attribute value for a selector inside a JS string.
func sel(s string) string { return strconv.Quote(s) }

// TestBrowserConsole drives the console in real headless Chromium against
// three real directord processes: the page shows every VIP and real server
// on every director, follows a real server going down, sends a drain
// clicked in the page to exactly the selected directors (recorded with the
// user and the reason), and previews a rollback with its diff before
// applying it.
func TestBrowserConsole(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("directord binds its VIPs to lo, which needs root (CAP_NET_ADMIN); `make test` runs as root")
	}
	bin := buildDirectord(t)
	web1, web2, api := newBackend(t), newBackend(t), newBackend(t)
	vipBase := fmt.Sprintf("127.80.%d", os.Getpid()%250+1)
	var ds []*daemon
	for _, name := range []string{"d1", "d2", "d3"} {
		ds = append(ds, startDaemon(t, bin, name, func(dir string) string {
			return fleetConfig(name, dir, vipBase, web1, web2, api, 1)
		}))
	}
	for _, d := range ds {
		d.waitStatus(t, "both VIPs advertised", func(st *directorv1.GetStatusResponse) bool {
			n := 0
			for _, v := range st.GetVips() {
				if v.GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED {
					n++
				}
			}
			return n == 2
		})
	}
	s := startBrowserConsole(t, ds)
	p := page{t, browser(t, map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:alice-pw-1"))})}
	if _, err := chromedp.Run(p.ctx, chromedp.Navigate(s.URL())); err != nil {
		t.Fatal(err)
	}

	// 1. Every VIP and every real server, on every director.
	web1Key, web2Key, apiKey := "web/127.0.0.1:"+web1.port(), "web/127.0.0.1:"+web2.port(), "api/127.0.0.1:"+api.port()
	for _, vip := range []string{vipBase + ".10", vipBase + ".11"} {
		p.waitJS("VIP "+vip+" advertised on d1, d2 and d3", `["d1","d2","d3"].every(d => document.querySelector(
			'#vips tr[data-vip='+`+sel(sel(vip))+`+'] td[data-director="'+d+'"][data-state="advertised"]'))`)
	}
	for _, key := range []string{web1Key, web2Key, apiKey} {
		p.waitJS("real server "+key+" up on d1, d2 and d3", `["d1","d2","d3"].every(d => document.querySelector(
			'tr[data-backend='+`+sel(sel(key))+`+'] td[data-director="'+d+'"][data-health="up"]'))`)
	}
	p.waitJS("the live stream", `document.querySelector("#live").className === "live-on"`)
	p.shot("console-fleet.png")

	// 2. d1 gets a new configuration (a weight), so there is a history.
	ds[0].write(t, fleetConfig("d1", ds[0].dir, vipBase, web1, web2, api, 3))
	ds[0].cmd.Process.Signal(syscall.SIGHUP)
	p.waitJS("d1 at version 2", `/v2 /.test(document.querySelector('#directors tr[data-director="d1"]').innerText)`)

	// 3. A real server goes down: the page follows without a reload.
	web2.down()
	p.waitJS(web2Key+" down on every director", `["d1","d2","d3"].every(d => document.querySelector(
		'tr[data-backend='+`+sel(sel(web2Key))+`+'] td[data-director="'+d+'"][data-health="down"]'))`)
	p.js(`location.hash = "#servers"`)
	p.waitJS("the real servers tab", `!document.querySelector("#servers").hidden`)
	p.shot("console-servers.png")

	// 4. Drain web1 on d1 and d2 only, from the page, with a reason.
	p.js(`document.querySelector('tr[data-backend=` + sel(web1Key) + `] button[data-act="drain-backend"]').click()`)
	p.waitJS("the confirmation dialog", `document.querySelector("#action-dialog").open`)
	p.js(`document.querySelector('#act-directors input[value="d3"]').click()`)
	p.js(`document.querySelector("#act-reason").value = "TICKET-42 kernel update"`)
	p.shot("console-drain-dialog.png")
	p.js(`document.querySelector("#act-confirm").click()`)
	p.waitJS("the drain confirmed by d1 and d2", `document.querySelectorAll('#act-results [data-ok="true"]').length === 2 &&
		!document.querySelector('#act-results [data-director="d3"]')`)
	for i, d := range ds {
		drained := i < 2
		d.waitStatus(t, fmt.Sprintf("web1 draining=%t", drained), func(st *directorv1.GetStatusResponse) bool {
			return backendOf(st, "web", web1.port()).GetDraining() == drained
		})
	}
	for _, d := range ds[:2] {
		var found *directorv1.Event
		for _, e := range d.events(t) {
			if e.GetKind() == directorv1.EventKind_EVENT_KIND_OVERRIDE && strings.HasPrefix(e.GetSubject(), "drain backend web/127.0.0.1:") {
				found = e
			}
		}
		if found == nil || found.GetReason() != "TICKET-42 kernel update" || !strings.HasSuffix(found.GetWho(), "on behalf of alice") {
			t.Errorf("%s event log: %v, want the drain with the reason, on behalf of alice", d.name, found)
		}
	}
	p.js(`document.querySelector("#act-cancel").click()`)
	p.waitJS("the dialog closed", `!document.querySelector("#action-dialog").open`)
	p.waitJS("the page showing the drain on d1 and d2 only", `['d1','d2'].every(d => document.querySelector(
		'tr[data-backend='+`+sel(sel(web1Key))+`+'] td[data-director="'+d+'"][data-draining="true"]')) &&
		document.querySelector('tr[data-backend='+`+sel(sel(web1Key))+`+'] td[data-director="d3"][data-draining="false"]')`)

	// With web2 down and web1 drained on d1 and d2, only d3 still serves
	// the web VIP: the fleet view flags the disagreement.
	p.js(`location.hash = "#fleet"`)
	p.waitJS("the web VIP flagged: withdrawn on d1 and d2, advertised on d3", `document.querySelector(
		'#vips tr.disagree[data-vip='+`+sel(sel(vipBase+".10"))+`+'] td[data-director="d3"][data-state="advertised"]')`)
	p.shot("console-fleet-disagreement.png")

	// 5. Roll d1 back to version 1: the dry run shows the diff first.
	p.js(`location.hash = "#history"`)
	p.waitJS("d1's history", `document.querySelector('#hist-list tr[data-version="1"] button[data-hist="preview"]')`)
	p.js(`document.querySelector('#hist-list tr[data-version="1"] button[data-hist="preview"]').click()`)
	want1 := "port: " + web1.port() + ", weight: 1 }"
	want3 := "port: " + web1.port() + ", weight: 3 }"
	p.waitJS("the rollback preview's diff", `[...document.querySelectorAll("#hist-detail .diff .del")].some(e => e.textContent.includes(`+sel(want3)+`)) &&
		[...document.querySelectorAll("#hist-detail .diff .ins")].some(e => e.textContent.includes(`+sel(want1)+`))`)
	if v := ds[0].status(t).GetConfig().GetVersion(); v != 2 {
		t.Fatalf("the preview changed d1's configuration to version %d", v)
	}
	p.shot("console-rollback-preview.png")
	p.js(`document.querySelector("#rb-reason").value = "weight 3 overloads web1"`)
	p.js(`document.querySelector("#rb-confirm").click()`)
	p.waitJS("the rollback done", `document.querySelector("#rb-done")`)
	ds[0].waitStatus(t, "version 3 with version 1's file", func(st *directorv1.GetStatusResponse) bool {
		return st.GetConfig().GetVersion() == 3 && backendOf(st, "web", web1.port()).GetConfiguredWeight() == 1
	})

	// 6. The event log, with who did what.
	p.js(`location.hash = "#events"`)
	p.waitJS("the rollback in the events", `[...document.querySelectorAll("#event-log tbody tr")].some(r =>
		r.innerText.includes("rollback to version 1: weight 3 overloads web1") && r.innerText.includes("on behalf of alice"))`)
	p.shot("console-events.png")
}

// startBrowserConsole serves a console for the daemons with alice (operate).
func startBrowserConsole(t *testing.T, ds []*daemon) *Server {
	t.Helper()
	o := Options{UsersFile: usersFile(t), AllowActions: true, Listen: "127.0.0.1:0", Dial: dialUnix, Poll: 200 * time.Millisecond}
	for _, d := range ds {
		o.Directors = append(o.Directors, Target{Name: d.name, Addr: d.sock})
	}
	s, err := New(o)
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
