//go:build linux && privileged

package observe_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
	"github.com/anycast-director/director/lab/observe"
	"github.com/anycast-director/director/lab/topology"
)

// TestPrivilegedAround measures traffic around two actions: one that
// leaves the service alone (nothing fails, nothing breaks) and one that
// kills it (every connection breaks, the requests after it fail).
func TestPrivilegedAround(t *testing.T) {
	topo := netlab.Deploy(t, "client-server")
	root, err := topology.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./lab/cmd/labclient", "./lab/cmd/labserver")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build labclient and labserver: %v\n%s", err, out)
	}
	server := topo.Node("server")
	serve := func() *netlab.Proc {
		p := server.Start("labserver", nil, filepath.Join(bin, "labserver"), "-http", ":80", "-echo", ":7000")
		if _, _, err := p.WaitOutput("serving", 0, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tr := observe.Traffic{Node: "client", Program: filepath.Join(bin, "labclient"), URL: "http://192.0.2.1/", Rate: 20,
		Echo: "192.0.2.1:7000", Conns: 20, EchoTimeout: time.Second, Before: time.Second, Settle: 2 * time.Second}
	ctx := context.Background()

	p := serve()
	quiet, err := observe.Around(ctx, topo.Runner(), tr, func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("nothing done: %s", quiet)
	if quiet.Opened != 20 || quiet.HTTP.OK == 0 || quiet.Failed != 0 || quiet.Broken != 0 {
		t.Errorf("nothing done: %s, %d answered; want 20 connections, answers, nothing failed or broken", quiet, quiet.HTTP.OK)
	}

	killed, err := observe.Around(ctx, topo.Runner(), tr, func(context.Context) error { p.Kill(); return nil })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server killed: %s", killed)
	if killed.BrokenDuring != 20 || killed.Broken != 20 {
		t.Errorf("server killed: %d broken, %d after the action; want all 20", killed.Broken, killed.BrokenDuring)
	}
	if killed.FailedDuring == 0 || killed.FailedDuring != killed.Failed {
		t.Errorf("server killed: %d requests failed, %d sent after the action; want some, all after it", killed.Failed, killed.FailedDuring)
	}
	if killed.ActionEnd.Before(killed.ActionStart) || killed.HTTP.End.Before(killed.ActionEnd) {
		t.Errorf("times out of order: action %s..%s, requests until %s", killed.ActionStart, killed.ActionEnd, killed.HTTP.End)
	}
}
