//go:build linux && privileged

package bgp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/lab/netlab"
	"github.com/anycast-director/director/routing"
)

// A speaker must run inside a director namespace, and entering a namespace
// from a multi-threaded Go test is unreliable. So the test binary doubles as
// the speaker: started with helperEnv set (under `ip netns exec`), TestMain
// runs one Speaker driven by line commands on stdin instead of the tests.
//
// Protocol: the helper prints "ready" once started, "reply <id> ok" or
// "reply <id> err <message>" for every command, and "event <json>" for every
// peer event. Commands are JSON objects, one per line (helperCmd).

const helperEnv = "DIRECTOR_BGP_TEST_SPEAKER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(helperEnv); cfg != "" {
		os.Exit(runHelper(cfg))
	}
	os.Exit(m.Run())
}

// helperConfig is what the test hands to a helper speaker.
type helperConfig struct {
	BGP     config.BGP
	Allowed []netip.Prefix
}

// helperCmd is one command to a helper speaker.
type helperCmd struct {
	ID  int
	Op  string // "set", "allow", "inject", "reconfigure", "stop"
	Ads []routing.Advertisement
	// Allowed replaces the allowed set ("allow"); large sets go this way
	// rather than through the environment, which caps one variable at 128 KiB.
	Allowed []netip.Prefix
	// Prefix is the route "inject" puts into GoBGP's RIB behind the
	// speaker's back (the export policy must drop it).
	Prefix netip.Prefix
	// BGP is the configuration "reconfigure" hands to Speaker.Reconfigure,
	// as a reload would.
	BGP *config.BGP
}

// runHelper is the helper process's main.
func runHelper(cfgJSON string) int {
	level := slog.LevelInfo
	if os.Getenv("DIRECTOR_BGP_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	var hc helperConfig
	if err := json.Unmarshal([]byte(cfgJSON), &hc); err != nil {
		logger.Error("bad helper config", "err", err)
		return 2
	}
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	s, err := New(&hc.BGP, logger, Options{OnPeerEvent: func(ev routing.PeerEvent) {
		b, _ := json.Marshal(ev)
		say("event %s", b)
	}})
	if err != nil {
		logger.Error("new speaker", "err", err)
		return 2
	}
	if err := s.SetAllowed(hc.Allowed); err != nil {
		logger.Error("set allowed", "err", err)
		return 2
	}
	if err := s.Start(context.Background()); err != nil {
		logger.Error("start speaker", "err", err)
		return 2
	}
	say("ready")
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var c helperCmd
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			logger.Error("bad command", "err", err)
			return 2
		}
		var err error
		switch c.Op {
		case "set":
			err = s.Set(context.Background(), c.Ads)
		case "allow":
			err = s.SetAllowed(c.Allowed)
		case "inject":
			err = injectRoute(s, c.Prefix)
		case "reconfigure":
			err = s.Reconfigure(context.Background(), c.BGP)
		case "stop":
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = s.Stop(ctx)
			cancel()
		default:
			err = fmt.Errorf("unknown op %q", c.Op)
		}
		if err != nil {
			say("reply %d err %s", c.ID, strings.ReplaceAll(err.Error(), "\n", "; "))
		} else {
			say("reply %d ok", c.ID)
		}
		if c.Op == "stop" {
			return 0
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Stop(ctx)
	return 0
}

// injectRoute adds a route straight into the speaker's GoBGP RIB.
func injectRoute(s *Speaker, p netip.Prefix) error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	nlri, err := bgp.NewIPAddrPrefix(p)
	if err != nil {
		return err
	}
	nh, _ := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
	_, err = srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{{
		Family: bgp.RF_IPv4_UC, Nlri: nlri,
		Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeAsPath(nil), nh},
	}}})
	return err
}

// speakerProc is the test's handle on a helper speaker.
type speakerProc struct {
	t    testing.TB
	proc *netlab.Proc
	id   int
	skip int // output lines already consumed
}

// startHelper runs a helper speaker in ns and waits until it is ready.
func startHelper(t testing.TB, ns *netlab.NS, hc helperConfig) *speakerProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find the test binary: %v", err)
	}
	b, err := json.Marshal(hc)
	if err != nil {
		t.Fatal(err)
	}
	p := ns.Start(ns.Short+"/speaker", []string{helperEnv + "=" + string(b)}, exe)
	sp := &speakerProc{t: t, proc: p}
	_, i, err := p.WaitOutput("ready", 0, 10*time.Second)
	if err != nil {
		t.Fatalf("speaker in %s: %v", ns.Name, err)
	}
	sp.skip = i + 1
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("speaker in %s output:\n%s", ns.Name, p.Output())
		}
	})
	return sp
}

// do sends a command and waits for its reply.
func (sp *speakerProc) do(c helperCmd) error {
	sp.id++
	c.ID = sp.id
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := sp.proc.Send(string(b)); err != nil {
		return err
	}
	line, i, err := sp.proc.WaitOutput(fmt.Sprintf("reply %d ", c.ID), sp.skip, 30*time.Second)
	if err != nil {
		return err
	}
	sp.skip = i + 1
	if _, msg, ok := strings.Cut(line, " err "); ok {
		return fmt.Errorf("speaker %s: %s", c.Op, msg)
	}
	return nil
}

// set hands the speaker a whole set and fails the test on error.
func (sp *speakerProc) set(ads ...routing.Advertisement) {
	sp.t.Helper()
	if err := sp.do(helperCmd{Op: "set", Ads: ads}); err != nil {
		sp.t.Fatal(err)
	}
}
