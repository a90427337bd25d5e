package console

import (
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/console/consoletest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

var screenshots = flag.Bool("screenshots", false, "write the console's screenshots into ../docs (for docs/console.md)")

// q, attr and all are consoletest's helpers, short for the selectors below.
var (
	q    = consoletest.Q
	attr = consoletest.Attr
	all  = consoletest.AllPresent
)

// cells lists a row's cell selector on each director, with extra attributes.
func cells(row string, dirs []string, extra string) []string {
	out := make([]string, len(dirs))
	for i, d := range dirs {
		out[i] = row + " td" + attr("data-director", d) + extra
	}
	return out
}

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
	names := []string{"d1", "d2", "d3"}
	var ds []*daemon
	for _, name := range names {
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
	shots := ""
	if *screenshots {
		shots = "../docs"
	}
	p := consoletest.Open(t, consoletest.Options{ShotDir: shots,
		Header: map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:alice-pw-1"))}})
	p.Navigate(s.URL())

	// 1. Every VIP and every real server, on every director.
	row := func(key string) string { return "tr" + attr("data-backend", key) }
	web1Row, web2Row, apiRow := row("web/127.0.0.1:"+web1.port()), row("web/127.0.0.1:"+web2.port()), row("api/127.0.0.1:"+api.port())
	webVIP := "#vips tr" + attr("data-vip", vipBase+".10")
	for _, vip := range []string{webVIP, "#vips tr" + attr("data-vip", vipBase+".11")} {
		p.WaitJS(vip+" advertised on every director", all(cells(vip, names, `[data-state="advertised"]`)...))
	}
	for _, r := range []string{web1Row, web2Row, apiRow} {
		p.WaitJS(r+" up on every director", all(cells(r, names, `[data-health="up"]`)...))
	}
	p.WaitJS("the live stream", `document.querySelector("#live").className === "live-on"`)
	p.Shot("console-fleet.png")

	// 2. d1 gets a new configuration (a weight), so there is a history.
	ds[0].write(t, fleetConfig("d1", ds[0].dir, vipBase, web1, web2, api, 3))
	ds[0].cmd.Process.Signal(syscall.SIGHUP)
	p.WaitJS("d1 at version 2", `/v2 /.test(document.querySelector('#directors tr[data-director="d1"]').innerText)`)

	// 3. A real server goes down: the page follows without a reload.
	web2.down()
	p.WaitJS(web2Row+" down on every director", all(cells(web2Row, names, `[data-health="down"]`)...))
	p.JS(`location.hash = "#servers"`)
	p.WaitJS("the real servers tab", `!document.querySelector("#servers").hidden`)
	p.Shot("console-servers.png")

	// 4. Drain web1 on d1 and d2 only, from the page, with a reason.
	p.JS(`document.querySelector(` + q(web1Row+` button[data-act="drain-backend"]`) + `).click()`)
	p.WaitJS("the confirmation dialog", `document.querySelector("#action-dialog").open`)
	p.JS(`document.querySelector('#act-directors input[value="d3"]').click()`)
	p.JS(`document.querySelector("#act-reason").value = "TICKET-42 kernel update"`)
	p.Shot("console-drain-dialog.png")
	p.JS(`document.querySelector("#act-confirm").click()`)
	p.WaitJS("the drain confirmed by d1 and d2", `document.querySelectorAll('#act-results [data-ok="true"]').length === 2 &&
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
	p.JS(`document.querySelector("#act-cancel").click()`)
	p.WaitJS("the dialog closed", `!document.querySelector("#action-dialog").open`)
	p.WaitJS("the page showing the drain on d1 and d2 only", all(append(cells(web1Row, names[:2], `[data-draining="true"]`),
		cells(web1Row, names[2:], `[data-draining="false"]`)...)...))

	// With web2 down and web1 drained on d1 and d2, only d3 still serves
	// the web VIP: the fleet view flags the disagreement.
	p.JS(`location.hash = "#fleet"`)
	p.WaitJS("the web VIP flagged: withdrawn on d1 and d2, advertised on d3", all(
		append(cells("#vips tr.disagree"+attr("data-vip", vipBase+".10"), names[:2], `[data-state="withdrawn"]`),
			cells(webVIP, names[2:], `[data-state="advertised"]`)...)...))
	p.Shot("console-fleet-disagreement.png")

	// 5. Roll d1 back to version 1: the dry run shows the diff first.
	p.JS(`location.hash = "#history"`)
	preview := `#hist-list tr[data-version="1"] button[data-hist="preview"]`
	p.WaitJS("d1's history", all(preview))
	p.JS(`document.querySelector(` + q(preview) + `).click()`)
	want1 := "port: " + web1.port() + ", weight: 1 }"
	want3 := "port: " + web1.port() + ", weight: 3 }"
	p.WaitJS("the rollback preview's diff", `[...document.querySelectorAll("#hist-detail .diff .del")].some(e => e.textContent.includes(`+q(want3)+`)) &&
		[...document.querySelectorAll("#hist-detail .diff .ins")].some(e => e.textContent.includes(`+q(want1)+`))`)
	if v := ds[0].status(t).GetConfig().GetVersion(); v != 2 {
		t.Fatalf("the preview changed d1's configuration to version %d", v)
	}
	p.Shot("console-rollback-preview.png")
	p.JS(`document.querySelector("#rb-reason").value = "weight 3 overloads web1"`)
	p.JS(`document.querySelector("#rb-confirm").click()`)
	p.WaitJS("the rollback done", `document.querySelector("#rb-done")`)
	ds[0].waitStatus(t, "version 3 with version 1's file", func(st *directorv1.GetStatusResponse) bool {
		return st.GetConfig().GetVersion() == 3 && backendOf(st, "web", web1.port()).GetConfiguredWeight() == 1
	})

	// 6. The event log, with who did what.
	p.JS(`location.hash = "#events"`)
	p.WaitJS("the rollback in the events", `[...document.querySelectorAll("#event-log tbody tr")].some(r =>
		r.innerText.includes("rollback to version 1: weight 3 overloads web1") && r.innerText.includes("on behalf of alice"))`)
	p.Shot("console-events.png")
}

// startBrowserConsole serves a console for the daemons with alice (operate).
func startBrowserConsole(t *testing.T, ds []*daemon) *Server {
	t.Helper()
	o := Options{UsersFile: usersFile(t), AllowActions: true, Poll: 200 * time.Millisecond}
	for _, d := range ds {
		o.Directors = append(o.Directors, Target{Name: d.name, Addr: d.sock})
	}
	return startConsole(t, o)
}
