package control

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
	"github.com/anycast-director/director/routing"
)

// statusToProto converts a snapshot; it only reads st.
func statusToProto(st *announcer.Status) *directorv1.GetStatusResponse {
	out := &directorv1.GetStatusResponse{
		Director:        st.Director,
		Config:          versionToProto(st.Config),
		Learning:        st.Learning,
		ShuttingDown:    st.ShuttingDown,
		Vips:            make([]*directorv1.VIP, 0, len(st.VIPs)),
		Services:        make([]*directorv1.Service, 0, len(st.Services)),
		Overrides:       overridesToProto(st.Overrides),
		IpvsFingerprint: directorFingerprint(st.Services),
		Reconcile: &directorv1.Reconcile{
			LastPass:             ts(st.LastPass),
			LastDuration:         durationpb.New(st.PassDuration),
			Passes:               st.Passes,
			FailedPasses:         st.FailedPasses,
			LastError:            st.LastError,
			WithdrawnForFailures: st.WithdrawnForFailures,
		},
	}
	if st.Drained != nil {
		out.Drained = noteToProto(*st.Drained)
	}
	if l := st.HealthLoad; l != nil {
		out.HealthLoad = healthLoadToProto(*l)
	}
	if r := st.State; r != nil {
		out.State = &directorv1.StateDirectory{Dir: r.Dir, Restored: r.Restored, Lost: r.Lost, LoadError: r.LoadError,
			SetAside: r.SetAside, Saved: ts(r.Saved), SaveError: r.SaveError, SaveFailures: r.SaveFailures}
	}
	for _, v := range st.VIPs {
		out.Vips = append(out.Vips, &directorv1.VIP{Address: v.VIP.String(), State: vipState(v),
			Reason: v.Reason, Services: v.Services, Since: ts(v.Since)})
	}
	for i := range st.Services {
		out.Services = append(out.Services, serviceToProto(&st.Services[i]))
	}
	for _, p := range st.Peers {
		out.Peers = append(out.Peers, peerToProto(p))
	}
	if len(st.Sysctls) > 0 {
		out.Sysctls = make(map[string]int64, len(st.Sysctls))
		for k, v := range st.Sysctls {
			out.Sysctls[k] = int64(v)
		}
	}
	if y := st.Sync; y.Configured || len(y.Daemons) > 0 {
		out.Sync = syncToProto(y)
	}
	return out
}

// syncToProto converts the connection synchronization's status.
func syncToProto(y ipvs.SyncStatus) *directorv1.SyncStatus {
	out := &directorv1.SyncStatus{Configured: y.Configured, Error: y.Error}
	for _, d := range y.Daemons {
		g := ""
		if d.Group.IsValid() {
			g = d.Group.String()
		}
		out.Daemons = append(out.Daemons, &directorv1.SyncDaemon{State: d.State.String(), Interface: d.Interface,
			SyncId: uint32(d.SyncID), Group: g, Port: uint32(d.Port), Ttl: uint32(d.TTL), MaxLen: uint32(d.MaxLen)})
	}
	return out
}

func serviceToProto(s *announcer.ServiceStatus) *directorv1.Service {
	out := &directorv1.Service{
		Name: s.Name, Vip: s.Key.VIP.String(), Port: uint32(s.Key.Port), Protocol: protocolOf(s.Key.Protocol),
		Forwarding: forwardingOf(s.Forwarding), Scheduler: s.Scheduler, SchedulerFlags: s.Flags,
		Healthy: int32(s.Healthy), Total: int32(s.Total), MinHealthy: int32(s.MinHealthy),
		Programmed: s.Programmed, Error: s.Error, Fingerprint: s.Fingerprint,
		Counters: countersToProto(s.Counters),
		Backends: make([]*directorv1.Backend, 0, len(s.Backends)),
	}
	for i := range s.Backends {
		b := &s.Backends[i]
		out.Backends = append(out.Backends, &directorv1.Backend{
			Address: b.Address.String(), Port: uint32(b.Port), Health: healthToProto(b.Health),
			ConfiguredWeight: int32(b.Configured), EffectiveWeight: int32(b.Effective),
			Draining: b.Draining, Deleted: b.Deleted, Reason: b.Reason, Override: b.Override,
			Counters: countersToProto(b.Counters),
		})
	}
	return out
}

func healthToProto(r health.Result) *directorv1.Health {
	state := directorv1.HealthState_HEALTH_STATE_UNKNOWN
	switch r.State {
	case health.Up:
		state = directorv1.HealthState_HEALTH_STATE_UP
	case health.Down:
		state = directorv1.HealthState_HEALTH_STATE_DOWN
	}
	return &directorv1.Health{State: state, Reason: r.Reason, LastError: r.LastError,
		Latency: durationpb.New(r.Latency), Since: ts(r.Since), LastProbe: ts(r.LastProbe), Probes: r.Probes}
}

func countersToProto(c ipvs.Stats) *directorv1.IPVSCounters {
	return &directorv1.IPVSCounters{ActiveConns: int64(c.ActiveConns), InactiveConns: int64(c.InactiveConns),
		Connections: c.Connections, PacketsIn: c.PacketsIn, PacketsOut: c.PacketsOut,
		BytesIn: c.BytesIn, BytesOut: c.BytesOut}
}

func peerToProto(p routing.PeerStatus) *directorv1.Peer {
	return &directorv1.Peer{Address: p.Address.String(), Asn: p.ASN, State: peerState(p.State),
		Since: ts(p.Since), BfdState: bfdState(p.BFDState), Flaps: p.Flaps,
		Advertised: int32(p.Advertised), LastError: p.LastError}
}

// peerState maps the routing adapter's state names (GoBGP's, lower-cased).
func peerState(s string) directorv1.PeerState {
	switch strings.ToLower(s) {
	case "idle":
		return directorv1.PeerState_PEER_STATE_IDLE
	case "connect":
		return directorv1.PeerState_PEER_STATE_CONNECT
	case "active":
		return directorv1.PeerState_PEER_STATE_ACTIVE
	case "opensent":
		return directorv1.PeerState_PEER_STATE_OPENSENT
	case "openconfirm":
		return directorv1.PeerState_PEER_STATE_OPENCONFIRM
	case "established":
		return directorv1.PeerState_PEER_STATE_ESTABLISHED
	}
	return directorv1.PeerState_PEER_STATE_UNSPECIFIED
}

func bfdState(s string) directorv1.BFDState {
	switch strings.ToLower(s) {
	case "":
		return directorv1.BFDState_BFD_STATE_OFF
	case "admin-down", "admindown":
		return directorv1.BFDState_BFD_STATE_ADMIN_DOWN
	case "down":
		return directorv1.BFDState_BFD_STATE_DOWN
	case "init":
		return directorv1.BFDState_BFD_STATE_INIT
	case "up":
		return directorv1.BFDState_BFD_STATE_UP
	}
	return directorv1.BFDState_BFD_STATE_UNSPECIFIED
}

func vipState(v announcer.VIPStatus) directorv1.VIPState {
	switch {
	case v.Advertised && v.Graceful:
		return directorv1.VIPState_VIP_STATE_GRACEFUL
	case v.Advertised:
		return directorv1.VIPState_VIP_STATE_ADVERTISED
	}
	return directorv1.VIPState_VIP_STATE_WITHDRAWN
}

func protocolOf(p uint8) directorv1.Protocol {
	switch p {
	case 6:
		return directorv1.Protocol_PROTOCOL_TCP
	case 17:
		return directorv1.Protocol_PROTOCOL_UDP
	}
	return directorv1.Protocol_PROTOCOL_UNSPECIFIED
}

func forwardingOf(f string) directorv1.Forwarding {
	switch f {
	case "dr":
		return directorv1.Forwarding_FORWARDING_DR
	case "nat":
		return directorv1.Forwarding_FORWARDING_NAT
	case "tunnel":
		return directorv1.Forwarding_FORWARDING_TUNNEL
	case "local":
		return directorv1.Forwarding_FORWARDING_LOCAL
	}
	return directorv1.Forwarding_FORWARDING_UNSPECIFIED
}

func versionToProto(v announcer.ConfigVersion) *directorv1.ConfigVersion {
	return &directorv1.ConfigVersion{Version: int64(v.Version), Digest: v.Digest, Source: v.Source, Loaded: ts(v.Loaded),
		Who: v.Who, Reason: v.Reason}
}

func noteToProto(n announcer.Note) *directorv1.Note {
	return &directorv1.Note{Reason: n.Reason, Who: n.Who, Created: ts(n.Created), Expires: ts(n.Expires)}
}

func refToProto(r announcer.BackendRef) *directorv1.BackendRef {
	return &directorv1.BackendRef{Service: r.Service, Address: r.Addr.String(), Port: uint32(r.Port)}
}

// overrideToProto builds one Override; ref is nil for VIP and director overrides.
func overrideToProto(kind directorv1.OverrideKind, ref *announcer.BackendRef, vip string, weight uint32, n announcer.Note) *directorv1.Override {
	o := &directorv1.Override{Kind: kind, Vip: vip, Weight: weight, Note: noteToProto(n)}
	if ref != nil {
		o.Backend = refToProto(*ref)
	}
	return o
}

// overridesToProto lists the active overrides in a stable order: director,
// VIPs, drains, weights, each sorted by subject.
func overridesToProto(o announcer.Overrides) []*directorv1.Override {
	var out []*directorv1.Override
	if o.Director != nil {
		out = append(out, overrideToProto(directorv1.OverrideKind_OVERRIDE_KIND_DRAIN_DIRECTOR, nil, "", 0, *o.Director))
	}
	vips := slices.SortedFunc(maps.Keys(o.DisabledVIPs), netip.Addr.Compare)
	for _, v := range vips {
		out = append(out, overrideToProto(directorv1.OverrideKind_OVERRIDE_KIND_DISABLE_VIP, nil, v.String(), 0, o.DisabledVIPs[v]))
	}
	for _, r := range slices.SortedFunc(maps.Keys(o.Drained), compareRefs) {
		out = append(out, overrideToProto(directorv1.OverrideKind_OVERRIDE_KIND_DRAIN_BACKEND, &r, "", 0, o.Drained[r]))
	}
	for _, r := range slices.SortedFunc(maps.Keys(o.Weights), compareRefs) {
		w := o.Weights[r]
		out = append(out, overrideToProto(directorv1.OverrideKind_OVERRIDE_KIND_WEIGHT, &r, "", uint32(max(w.Weight, 0)), w.Note))
	}
	return out
}

func compareRefs(a, b announcer.BackendRef) int {
	return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Service, b.Service), cmp.Compare(a.Port, b.Port))
}

func changesToProto(cs []announcer.Change) []*directorv1.Change {
	out := make([]*directorv1.Change, 0, len(cs))
	for _, c := range cs {
		kind := directorv1.ChangeKind_CHANGE_KIND_UNSPECIFIED
		switch c.Kind {
		case "service":
			kind = directorv1.ChangeKind_CHANGE_KIND_SERVICE
		case "destination":
			kind = directorv1.ChangeKind_CHANGE_KIND_DESTINATION
		case "route":
			kind = directorv1.ChangeKind_CHANGE_KIND_ROUTE
		case "health":
			kind = directorv1.ChangeKind_CHANGE_KIND_HEALTH
		}
		action := directorv1.ChangeAction_CHANGE_ACTION_UNSPECIFIED
		switch c.Action {
		case "add":
			action = directorv1.ChangeAction_CHANGE_ACTION_ADD
		case "change":
			action = directorv1.ChangeAction_CHANGE_ACTION_CHANGE
		case "remove":
			action = directorv1.ChangeAction_CHANGE_ACTION_REMOVE
		case "keep":
			action = directorv1.ChangeAction_CHANGE_ACTION_KEEP
		case "reset":
			action = directorv1.ChangeAction_CHANGE_ACTION_RESET
		}
		out = append(out, &directorv1.Change{Kind: kind, Action: action, Subject: c.Subject, Detail: c.Detail})
	}
	return out
}

// healthLoadToProto converts the health checker's load.
func healthLoadToProto(l health.Load) *directorv1.HealthLoad {
	return &directorv1.HealthLoad{Overloaded: l.Overloaded, Reason: l.Reason, IntervalStretch: l.Stretch,
		DemandedPerSecond: l.Demanded, AchievedPerSecond: l.Achieved, InFlight: int64(l.InFlight),
		Skipped: l.Skipped, Discarded: l.Discarded, Since: ts(l.Since)}
}

func eventToProto(e announcer.Event) *directorv1.Event {
	kind := directorv1.EventKind_EVENT_KIND_UNSPECIFIED
	switch e.Kind {
	case announcer.EventHealth:
		kind = directorv1.EventKind_EVENT_KIND_HEALTH
	case announcer.EventVIP:
		kind = directorv1.EventKind_EVENT_KIND_VIP
	case announcer.EventPeer:
		kind = directorv1.EventKind_EVENT_KIND_PEER
	case announcer.EventReload:
		kind = directorv1.EventKind_EVENT_KIND_RELOAD
	case announcer.EventOverride:
		kind = directorv1.EventKind_EVENT_KIND_OVERRIDE
	case announcer.EventDirector:
		kind = directorv1.EventKind_EVENT_KIND_DIRECTOR
	case announcer.EventRepair:
		kind = directorv1.EventKind_EVENT_KIND_REPAIR
	}
	return &directorv1.Event{Seq: e.Seq, Time: ts(e.Time), Kind: kind, Subject: e.Subject,
		From: e.From, To: e.To, Reason: e.Reason, Who: e.Who}
}

// directorFingerprint condenses the per-service IPVS fingerprints into one
// value: two directors with the same value pick the same real server for
// every flow. The form is "<services>/<16 hex digits>"; "" without IPVS
// services.
func directorFingerprint(svcs []announcer.ServiceStatus) string {
	lines := make([]string, 0, len(svcs))
	for _, s := range svcs {
		if s.Forwarding == "local" {
			continue
		}
		lines = append(lines, s.Key.String()+"="+s.Fingerprint)
	}
	if len(lines) == 0 {
		return ""
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return strconv.Itoa(len(lines)) + "/" + hex.EncodeToString(sum[:8])
}

// versionList lists kept versions for messages.
func versionList(hist []announcer.ConfigVersion) string {
	vs := make([]string, 0, len(hist))
	for _, h := range hist {
		vs = append(vs, strconv.Itoa(h.Version))
	}
	return shortList(vs)
}

// ts converts a time, leaving the zero time unset.
func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func itoa[T ~uint32 | ~int](v T) string { return strconv.FormatInt(int64(v), 10) }
