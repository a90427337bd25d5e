package control_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control/controltest"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// backendLines renders every backend of a GetStatus answer.
func backendLines(resp *directorv1.GetStatusResponse) []string {
	var out []string
	for _, s := range resp.GetServices() {
		for _, b := range s.GetBackends() {
			out = append(out, fmt.Sprintf("%s %s:%d %s configured=%d effective=%d draining=%t",
				s.GetName(), b.GetAddress(), b.GetPort(), b.GetHealth().GetState(),
				b.GetConfiguredWeight(), b.GetEffectiveWeight(), b.GetDraining()))
		}
	}
	return out
}

// kernelWeight renders the fake kernel's weight of one destination.
func kernelWeight(h *controltest.Harness, key ipvs.Key, dest string) int {
	return h.World.Weight(key, ap(dest))
}

func TestGetStatusMatchesTheLoopAndTheKernel(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	h.World.SetDown(ap("10.0.2.31:443"), true)
	h.WaitFor("10.0.2.31 down", func(s *announcer.Status) bool {
		b, _ := controltest.Backend(s, "api", "10.0.2.31")
		return b.Health.State == health.Down && b.Effective == 0
	})
	resp, err := h.Client.GetStatus(ctxT(t), &directorv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"web 10.0.2.21:80 HEALTH_STATE_UP configured=1 effective=1 draining=false",
		"web 10.0.2.22:80 HEALTH_STATE_UP configured=1 effective=1 draining=false",
		"api 10.0.2.21:443 HEALTH_STATE_UP configured=2 effective=2 draining=false",
		"api 10.0.2.31:443 HEALTH_STATE_DOWN configured=1 effective=0 draining=false",
	}
	if diff := cmp.Diff(want, backendLines(resp)); diff != "" {
		t.Errorf("backends (-want +got):\n%s", diff)
	}
	// The status is what the fake kernel holds.
	for _, s := range resp.GetServices() {
		key := ipvs.Key{VIP: netip.MustParseAddr(s.GetVip()), Port: uint16(s.GetPort()), Protocol: 6}
		for _, b := range s.GetBackends() {
			dest := fmt.Sprintf("%s:%d", b.GetAddress(), b.GetPort())
			if got := kernelWeight(h, key, dest); got != int(b.GetEffectiveWeight()) {
				t.Errorf("%s %s: status effective weight %d, kernel %d", s.GetName(), dest, b.GetEffectiveWeight(), got)
			}
		}
	}
	wantDigest := config.Digest([]byte(controltest.BaseConfig))
	if got := resp.GetConfig(); got.GetVersion() != 1 || got.GetDigest() != wantDigest || got.GetLoaded() == nil {
		t.Errorf("config = %v, want version 1 digest %s with a load time", got, wantDigest)
	}
	var vips []string
	for _, v := range resp.GetVips() {
		vips = append(vips, fmt.Sprintf("%s %s %s %v", v.GetAddress(), v.GetState(), v.GetReason(), v.GetServices()))
	}
	wantVIPs := []string{
		"198.18.0.10 VIP_STATE_ADVERTISED healthy 2/2 [web]",
		"198.18.0.11 VIP_STATE_ADVERTISED healthy 1/2 [api]",
	}
	if diff := cmp.Diff(wantVIPs, vips); diff != "" {
		t.Errorf("VIPs (-want +got):\n%s", diff)
	}
	for _, v := range resp.GetVips() {
		if got := h.World.Advertised(netip.MustParseAddr(v.GetAddress())); got != (v.GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED) {
			t.Errorf("VIP %s: status %s, fake router has it: %t", v.GetAddress(), v.GetState(), got)
		}
	}
	if p := resp.GetPeers(); len(p) != 1 || p[0].GetState() != directorv1.PeerState_PEER_STATE_ESTABLISHED ||
		p[0].GetBfdState() != directorv1.BFDState_BFD_STATE_UP || p[0].GetFlaps() != 2 {
		t.Errorf("peers = %v", p)
	}
	if resp.GetSysctls()["sloppy_tcp"] != 1 {
		t.Errorf("sysctls = %v", resp.GetSysctls())
	}
	if fp := resp.GetIpvsFingerprint(); !strings.HasPrefix(fp, "2/") || len(fp) != 18 {
		t.Errorf("ipvs fingerprint = %q, want 2/<16 hex>", fp)
	}
	for _, s := range resp.GetServices() {
		if s.GetFingerprint() == "" || !s.GetProgrammed() || s.GetProtocol() != directorv1.Protocol_PROTOCOL_TCP ||
			s.GetForwarding() != directorv1.Forwarding_FORWARDING_DR {
			t.Errorf("service %s = %v", s.GetName(), s)
		}
	}
	if resp.GetDirector() != "t1" || resp.GetLearning() || resp.GetReconcile().GetPasses() == 0 {
		t.Errorf("director=%q learning=%t passes=%d", resp.GetDirector(), resp.GetLearning(), resp.GetReconcile().GetPasses())
	}
}

func TestDrainMovesTheBackendToWeightZeroAndBack(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	h.World.SetApplyDelay(50 * time.Millisecond) // a slow pass: the call must wait for it
	ctx := ctxT(t)
	resp, err := h.Client.DrainBackend(ctx, &directorv1.DrainBackendRequest{
		Backend: &directorv1.BackendRef{Service: "web", Address: "10.0.2.21"},
		Reason:  "TICKET-1 kernel update", ExpiresAfter: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"web/10.0.2.21:80"}, resp.GetMatched()); diff != "" {
		t.Errorf("matched (-want +got):\n%s", diff)
	}
	// Read your writes: once the call returns, the status shows the drain.
	if b, _ := controltest.Backend(h.Loop.Status(), "web", "10.0.2.21"); !b.Draining {
		t.Errorf("status right after DrainBackend does not show the drain: %+v", b)
	}
	h.WaitWorld("web 10.0.2.21 at weight 0", func() bool { return kernelWeight(h, controltest.WebKey(), "10.0.2.21:80") == 0 })
	if got := kernelWeight(h, controltest.APIKey(), "10.0.2.21:443"); got != 2 {
		t.Errorf("api's 10.0.2.21 has weight %d, want 2: a drain scoped to web must not touch api", got)
	}
	st := h.WaitFor("drain in status", func(s *announcer.Status) bool {
		b, _ := controltest.Backend(s, "web", "10.0.2.21")
		return b.Draining
	})
	b, _ := controltest.Backend(st, "web", "10.0.2.21")
	if b.Effective != 0 || !strings.Contains(b.Override, "drained by operator: TICKET-1 kernel update (until ") {
		t.Errorf("backend = effective %d override %q", b.Effective, b.Override)
	}
	// The override records the caller from SO_PEERCRED: this test process.
	who := fmt.Sprintf("uid=%d pid=%d", os.Getuid(), os.Getpid())
	ref := announcer.BackendRef{Service: "web", Addr: netip.MustParseAddr("10.0.2.21")}
	if n := st.Overrides.Drained[ref]; n.Who != who || n.Expires.IsZero() {
		t.Errorf("override note = %+v, want who %q and an expiry", n, who)
	}
	if logs := h.Logs.String(); !strings.Contains(logs, "call=DrainBackend caller=\""+who+"\"") {
		t.Errorf("audit log lacks the caller:\n%s", logs)
	}

	en, err := h.Client.EnableBackend(ctx, &directorv1.EnableBackendRequest{
		Backend: &directorv1.BackendRef{Service: "web", Address: "10.0.2.21"}, Reason: "done"})
	if err != nil {
		t.Fatal(err)
	}
	if !en.GetWasDrained() {
		t.Errorf("EnableBackend says the backend was not drained")
	}
	h.WaitWorld("web 10.0.2.21 back at weight 1", func() bool { return kernelWeight(h, controltest.WebKey(), "10.0.2.21:80") == 1 })
}

func TestSetWeightAndClear(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ctx := ctxT(t)
	if _, err := h.Client.SetWeight(ctx, &directorv1.SetWeightRequest{
		Backend: &directorv1.BackendRef{Address: "10.0.2.21"}, Weight: 7}); err != nil {
		t.Fatal(err)
	}
	h.WaitWorld("weight 7 on both services", func() bool {
		return kernelWeight(h, controltest.WebKey(), "10.0.2.21:80") == 7 && kernelWeight(h, controltest.APIKey(), "10.0.2.21:443") == 7
	})
	if _, err := h.Client.SetWeight(ctx, &directorv1.SetWeightRequest{
		Backend: &directorv1.BackendRef{Address: "10.0.2.21"}, Clear: true}); err != nil {
		t.Fatal(err)
	}
	h.WaitWorld("configured weights back", func() bool {
		return kernelWeight(h, controltest.WebKey(), "10.0.2.21:80") == 1 && kernelWeight(h, controltest.APIKey(), "10.0.2.21:443") == 2
	})
}

func TestDisableVIPAndDrainDirector(t *testing.T) {
	h := controltest.Start(t, controltest.Options{Config: strings.Replace(controltest.BaseConfig,
		"resync_interval: 1s", "resync_interval: 1s\n  graceful_shutdown: 100ms", 1)})
	ctx := ctxT(t)
	web := netip.MustParseAddr("198.18.0.10")
	apiVIP := netip.MustParseAddr("198.18.0.11")
	if _, err := h.Client.DisableVIP(ctx, &directorv1.DisableVIPRequest{Vip: "198.18.0.10", Reason: "move traffic"}); err != nil {
		t.Fatal(err)
	}
	h.WaitWorld("web VIP withdrawn", func() bool { return !h.World.Advertised(web) })
	if !h.World.Advertised(apiVIP) {
		t.Errorf("api VIP withdrawn too")
	}
	if resp, err := h.Client.EnableVIP(ctx, &directorv1.EnableVIPRequest{Vip: "198.18.0.10"}); err != nil || !resp.GetWasDisabled() {
		t.Fatalf("EnableVIP = %v, %v", resp, err)
	}
	h.WaitWorld("web VIP back", func() bool { return h.World.Advertised(web) })

	if _, err := h.Client.DrainDirector(ctx, &directorv1.DrainDirectorRequest{Reason: "maintenance"}); err != nil {
		t.Fatal(err)
	}
	h.WaitWorld("every VIP withdrawn", func() bool { return !h.World.Advertised(web) && !h.World.Advertised(apiVIP) })
	st, err := h.Client.GetStatus(ctx, &directorv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetDrained().GetReason() != "maintenance" || kernelWeight(h, controltest.WebKey(), "10.0.2.21:80") != 1 {
		t.Errorf("drained = %v, kernel weight %d (IPVS must keep forwarding)", st.GetDrained(), kernelWeight(h, controltest.WebKey(), "10.0.2.21:80"))
	}
	if resp, err := h.Client.UndrainDirector(ctx, &directorv1.UndrainDirectorRequest{}); err != nil || !resp.GetWasDrained() {
		t.Fatalf("UndrainDirector = %v, %v", resp, err)
	}
	h.WaitWorld("VIPs back", func() bool { return h.World.Advertised(web) && h.World.Advertised(apiVIP) })
}

func TestOverridesSurviveAReload(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ctx := ctxT(t)
	if _, err := h.Client.DrainBackend(ctx, &directorv1.DrainBackendRequest{
		Backend: &directorv1.BackendRef{Service: "web", Address: "10.0.2.21", Port: 80}}); err != nil {
		t.Fatal(err)
	}
	h.WaitWorld("drained", func() bool { return kernelWeight(h, controltest.WebKey(), "10.0.2.21:80") == 0 })
	h.SetFile(controltest.SecondConfig)
	resp, err := h.Client.Reload(ctx, &directorv1.ReloadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetApplied() || resp.GetVersion().GetVersion() != 2 || resp.GetVersion().GetDigest() != config.Digest([]byte(controltest.SecondConfig)) {
		t.Errorf("reload = %v", resp)
	}
	h.WaitWorld("new backend programmed", func() bool { return kernelWeight(h, controltest.WebKey(), "10.0.2.23:80") == 1 })
	if got := kernelWeight(h, controltest.WebKey(), "10.0.2.21:80"); got != 0 {
		t.Errorf("after the reload the drained backend has weight %d, want 0", got)
	}
	st := h.Loop.Status()
	if b, _ := controltest.Backend(st, "web", "10.0.2.21"); !b.Draining || !strings.HasPrefix(b.Override, "drained by operator") {
		t.Errorf("after reload: %+v", b)
	}
}

func TestReloadDryRunChangesNothingAndReportsTheDiff(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ctx := ctxT(t)
	h.SetFile(controltest.SecondConfig)
	before := h.World.String()
	resp, err := h.Client.Reload(ctx, &directorv1.ReloadRequest{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range resp.GetChanges() {
		got = append(got, fmt.Sprintf("%s %s %s", c.GetAction(), c.GetKind(), c.GetSubject()))
	}
	want := []string{
		"CHANGE_ACTION_ADD CHANGE_KIND_DESTINATION tcp/198.18.0.10:80 -> 10.0.2.23:80",
		// api is no longer configured: its destinations drain first.
		"CHANGE_ACTION_CHANGE CHANGE_KIND_DESTINATION tcp/198.18.0.11:443 -> 10.0.2.21:443",
		"CHANGE_ACTION_CHANGE CHANGE_KIND_DESTINATION tcp/198.18.0.11:443 -> 10.0.2.31:443",
		"CHANGE_ACTION_REMOVE CHANGE_KIND_ROUTE 198.18.0.11/32",
		// The new backend's verdict starts with its first probe.
		"CHANGE_ACTION_RESET CHANGE_KIND_HEALTH web 10.0.2.23:80",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("dry-run plan (-want +got):\n%s", diff)
	}
	if resp.GetApplied() || resp.GetVersion().GetVersion() != 1 {
		t.Errorf("dry run applied=%t version=%d", resp.GetApplied(), resp.GetVersion().GetVersion())
	}
	time.Sleep(50 * time.Millisecond) // a wrongly applied reload would show by now
	if after := h.World.String(); after != before {
		t.Errorf("dry run changed the kernel:\nbefore %s\nafter  %s", before, after)
	}
	if v := h.Loop.Status().Config.Version; v != 1 {
		t.Errorf("running version %d after a dry run, want 1", v)
	}
}

func TestReloadOfABrokenFileKeepsTheRunningConfiguration(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	h.SetFile(strings.Replace(controltest.SecondConfig, "10.0.2.23", "10.0.2.300", 1))
	_, err := h.Client.Reload(ctxT(t), &directorv1.ReloadRequest{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `"10.0.2.300" is not an IP address`) {
		t.Fatalf("reload of a broken file = %v, want FailedPrecondition naming the bad address", err)
	}
	if v := h.Loop.Status().Config.Version; v != 1 {
		t.Errorf("running version %d, want 1", v)
	}
}

func TestRollbackRestoresThePreviousVersion(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ctx := ctxT(t)
	h.SetFile(controltest.SecondConfig)
	if _, err := h.Client.Reload(ctx, &directorv1.ReloadRequest{}); err != nil {
		t.Fatal(err)
	}
	h.WaitWorld("api removed", func() bool { return kernelWeight(h, controltest.APIKey(), "10.0.2.31:443") <= 0 })

	rb, err := h.Client.Rollback(ctx, &directorv1.RollbackRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v := rb.GetVersion(); v.GetVersion() != 3 || v.GetDigest() != config.Digest([]byte(controltest.BaseConfig)) {
		t.Errorf("rollback = %v, want version 3 with the first file's digest", v)
	}
	h.WaitWorld("api back", func() bool { return kernelWeight(h, controltest.APIKey(), "10.0.2.31:443") == 1 })
	h.WaitWorld("10.0.2.23 draining", func() bool { return kernelWeight(h, controltest.WebKey(), "10.0.2.23:80") <= 0 })

	list, err := h.Client.ListConfigs(ctx, &directorv1.ListConfigsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range list.GetConfigs() {
		got = append(got, fmt.Sprintf("%d %s", c.GetVersion(), c.GetDigest()))
	}
	d1, d2 := config.Digest([]byte(controltest.BaseConfig)), config.Digest([]byte(controltest.SecondConfig))
	if diff := cmp.Diff([]string{"1 " + d1, "2 " + d2, "3 " + d1}, got); diff != "" || list.GetRunning() != 3 {
		t.Errorf("configs (-want +got):\n%s running=%d", diff, list.GetRunning())
	}
	// An explicit version works too, and unknown ones are refused.
	if rb, err := h.Client.Rollback(ctx, &directorv1.RollbackRequest{Version: 2}); err != nil || rb.GetVersion().GetDigest() != d2 {
		t.Errorf("rollback to 2 = %v, %v", rb, err)
	}
	_, err = h.Client.Rollback(ctx, &directorv1.RollbackRequest{Version: 42})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "use one of 2, 3, 4") {
		t.Errorf("rollback to 42 = %v, want NotFound listing the kept versions", err)
	}
}

// routerTestConfig is a director announcing one VIP with the given
// director and bgp settings.
func routerTestConfig(director, bgp string) string {
	return "director: { name: t1, hold_down: 0s, resync_interval: 1s, " + director + " }\n" + bgp + `services:
  - name: web
    vip: 198.18.0.10
    port: 80
    health: { type: tcp, interval: 1s, timeout: 500ms }
    backends: [ { address: 10.0.2.21 } ]
`
}

// TestRouterConfig renders the router side over the API for the running
// configuration. A configuration that gives none (announce: none, or OSPF
// without the router's interfaces) is FAILED_PRECONDITION with the reason:
// it used to be INTERNAL.
func TestRouterConfig(t *testing.T) {
	frr, bird := directorv1.RouterFlavor_ROUTER_FLAVOR_FRR, directorv1.RouterFlavor_ROUTER_FLAVOR_BIRD
	bgpCfg := routerTestConfig("announce: bgp", `bgp:
  asn: 65100
  router_id: 10.0.1.11
  peers: [ { address: 10.0.1.1, asn: 65000, local_address: 10.0.1.11 } ]
`)
	for _, c := range []struct {
		name   string
		config string
		req    *directorv1.RouterConfigRequest
		code   codes.Code
		want   string
	}{
		{"bgp, frr", bgpCfg, &directorv1.RouterConfigRequest{Flavor: frr}, codes.OK, "neighbor 10.0.1.11 remote-as 65100"},
		{"bgp, bird", bgpCfg, &directorv1.RouterConfigRequest{Flavor: bird}, codes.OK, "neighbor 10.0.1.11 as 65100"},
		{"bgp, another router", bgpCfg, &directorv1.RouterConfigRequest{Flavor: frr, RouterAddresses: []string{"10.0.9.1"}},
			codes.FailedPrecondition, "has no peer entry for this router"},
		{"announce none", controltest.BaseConfig, &directorv1.RouterConfigRequest{Flavor: frr},
			codes.FailedPrecondition, "the running configuration gives no router configuration: no director announces to this router"},
		{"ospf without interfaces", routerTestConfig("announce: kernel", ""), &directorv1.RouterConfigRequest{Flavor: frr, RouterId: "10.0.1.1"},
			codes.FailedPrecondition, "give the router's interfaces toward them"},
		{"ospf with interfaces", routerTestConfig("announce: kernel", ""),
			&directorv1.RouterConfigRequest{Flavor: frr, RouterId: "10.0.1.1", OspfInterfaces: []string{"eth1"}, OspfPointToPoint: true},
			codes.OK, "interface eth1"},
		{"bad router address", bgpCfg, &directorv1.RouterConfigRequest{Flavor: frr, RouterAddresses: []string{"10.0.1"}},
			codes.InvalidArgument, `router address "10.0.1" is not an IP address`},
		{"bad area", routerTestConfig("announce: kernel", ""), &directorv1.RouterConfigRequest{Flavor: frr, OspfArea: "1"},
			codes.InvalidArgument, `ospf_area "1" is not an area ID`},
		{"too many paths", bgpCfg, &directorv1.RouterConfigRequest{Flavor: frr, MaximumPaths: 1000},
			codes.InvalidArgument, "maximum_paths 1000 is out of range"},
		{"no flavor", bgpCfg, &directorv1.RouterConfigRequest{}, codes.InvalidArgument, "flavor ROUTER_FLAVOR_UNSPECIFIED is not supported"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := controltest.Start(t, controltest.Options{Config: c.config})
			resp, err := h.Client.RouterConfig(ctxT(t), c.req)
			if status.Code(err) != c.code {
				t.Fatalf("RouterConfig = %v, want %s", err, c.code)
			}
			got := resp.GetConfig()
			if err != nil {
				got = status.Convert(err).Message()
			}
			if !strings.Contains(got, c.want) {
				t.Errorf("RouterConfig answered:\n%s\nwant %q", got, c.want)
			}
		})
	}
}

func TestOverridesOnRemovedThingsCanBeLifted(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	ctx := ctxT(t)
	api := &directorv1.BackendRef{Service: "api", Address: "10.0.2.31", Port: 443}
	if _, err := h.Client.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: api}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Client.DisableVIP(ctx, &directorv1.DisableVIPRequest{Vip: "198.18.0.11"}); err != nil {
		t.Fatal(err)
	}
	h.SetFile(controltest.SecondConfig) // removes the api service and its VIP
	if _, err := h.Client.Reload(ctx, &directorv1.ReloadRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Client.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: api}); status.Code(err) != codes.NotFound {
		t.Errorf("a new drain of a removed backend: %v, want NotFound", err)
	}
	en, err := h.Client.EnableBackend(ctx, &directorv1.EnableBackendRequest{Backend: api})
	if err != nil || !en.GetWasDrained() {
		t.Errorf("lifting the drain of a removed backend = %v, %v", en, err)
	}
	ev, err := h.Client.EnableVIP(ctx, &directorv1.EnableVIPRequest{Vip: "198.18.0.11"})
	if err != nil || !ev.GetWasDisabled() {
		t.Errorf("enabling a removed, disabled VIP = %v, %v", ev, err)
	}
	if o := h.Loop.Status().Overrides; len(o.Drained)+len(o.DisabledVIPs) != 0 {
		t.Errorf("overrides left: %+v", o)
	}
}
