// Package consoletest drives the operator console in real headless
// Chromium (Debian's chromium, through chromedp) for tests: every step waits
// on a condition of the page's DOM, never on a sleep.
package consoletest

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// ChromiumPath is Debian's chromium (scripts/deps.sh installs it).
const ChromiumPath = "/usr/bin/chromium"

// Options configure a browser.
type Options struct {
	// Header is sent with every request (an Authorization header).
	Header map[string]string
	// Start bounds Chromium's start and the first page load (default 1 min;
	// minutes in the emulated VM).
	Start time.Duration
	// Step bounds each wait (default 30 s).
	Step time.Duration
	// ShotDir receives screenshots (default: a temporary folder).
	ShotDir string
}

// Page is one tab of a headless Chromium with a fresh profile.
type Page struct {
	t   testing.TB
	ctx context.Context
	o   Options
}

// Open starts Chromium with the flags a test machine needs (no sandbox: the
// tests run as root; no GPU, no background traffic, no first-run setup) and
// returns its tab. The browser stops when the test ends.
func Open(t testing.TB, o Options) *Page {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Fatalf("%s: %v: install Debian's chromium (bash scripts/deps.sh test)", ChromiumPath, err)
	}
	if o.Start == 0 {
		o.Start = time.Minute
	}
	if o.Step == 0 {
		o.Step = 30 * time.Second
	}
	if o.ShotDir == "" {
		o.ShotDir = t.TempDir()
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(ChromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
		chromedp.WSURLReadTimeout(o.Start))
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	headers := network.Headers{}
	for k, v := range o.Header {
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
	return &Page{t: t, ctx: ctx, o: o}
}

// Navigate loads url and waits for its load event.
func (p *Page) Navigate(url string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, p.o.Start)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
		p.t.Fatalf("load %s: %v", url, err)
	}
}

// WaitJS waits until the JavaScript expression is truthy; on timeout the
// test fails with what the page shows.
func (p *Page) WaitJS(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, p.o.Step)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")", chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		text, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.querySelector("main").textContent.replace(/\s+/g, " ")`))
		p.t.Fatalf("the page never showed %s (%v); it shows:\n%s", what, err, text)
	}
}

// JS runs a statement in the page.
func (p *Page) JS(stmt string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, p.o.Step)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`(() => { `+stmt+`; return null; })()`)); err != nil && err != chromedp.ErrJSNull {
		p.t.Fatalf("%s: %v", stmt, err)
	}
}

// Shot saves a screenshot of the whole page as name in ShotDir.
func (p *Page) Shot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, p.o.Step)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(p.o.ShotDir, name), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// Q quotes s as a JavaScript string literal.
func Q(s string) string { return strconv.Quote(s) }

// Attr is a CSS attribute selector [name="value"] as a JavaScript string
// literal piece, for building selectors inside JS strings.
func Attr(name, value string) string { return "[" + name + "=" + strconv.Quote(value) + "]" }

// AllPresent is a JavaScript expression that is true when every CSS
// selector matches an element.
func AllPresent(selectors ...string) string {
	qs := make([]string, len(selectors))
	for i, s := range selectors {
		qs[i] = Q(s)
	}
	return "[" + strings.Join(qs, ",") + "].every(s => document.querySelector(s))"
}
