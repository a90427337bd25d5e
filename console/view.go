package console

import (
	"slices"
	"strconv"
	"strings"
	"time"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// View is what the page shows: the fleet side by side. It is rebuilt from
// the directors' latest status whenever one changes and sent to every
// browser as one server-sent event.
type View struct {
	Generated time.Time      `json:"generated"`
	Directors []DirectorView `json:"directors"`
	VIPs      []VIPRow       `json:"vips"`
	Services  []ServiceRow   `json:"services"`
	Peers     []PeerRow      `json:"peers"`
	Events    []EventRow     `json:"events"`
}

// DirectorView is one director's own state.
type DirectorView struct {
	Name      string    `json:"name"`
	Target    string    `json:"target"`
	Connected bool      `json:"connected"`
	Error     string    `json:"error,omitempty"`
	Updated   time.Time `json:"updated"`
	// Daemon is the name the director gives itself.
	Daemon       string    `json:"daemon"`
	Version      int64     `json:"version"`
	Digest       string    `json:"digest"`
	Loaded       time.Time `json:"loaded"`
	Learning     bool      `json:"learning"`
	ShuttingDown bool      `json:"shutting_down"`
	Drained      *Note     `json:"drained,omitempty"`
	// Fingerprint is the director-wide IPVS fingerprint; Mismatch is set
	// when connected directors disagree.
	Fingerprint string `json:"fingerprint"`
	Mismatch    bool   `json:"mismatch"`
	Passes      uint64 `json:"passes"`
	Failed      uint64 `json:"failed_passes"`
	LastError   string `json:"last_error,omitempty"`
	Withdrawn   bool   `json:"withdrawn_for_failures"`
}

// Note is an operator override's note.
type Note struct {
	Reason  string    `json:"reason"`
	Who     string    `json:"who"`
	Expires time.Time `json:"expires"`
}

// VIPRow is one VIP across directors.
type VIPRow struct {
	Address  string             `json:"address"`
	Services []string           `json:"services"`
	Cells    map[string]VIPCell `json:"cells"`
	// Disagree is set when connected directors announce it differently.
	Disagree bool `json:"disagree"`
}

// VIPCell is a VIP on one director.
type VIPCell struct {
	State    string    `json:"state"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	Disabled bool      `json:"disabled"`
}

// ServiceRow is one service across directors.
type ServiceRow struct {
	Name       string   `json:"name"`
	VIP        string   `json:"vip"`
	Port       uint32   `json:"port"`
	Protocol   string   `json:"protocol"`
	Forwarding string   `json:"forwarding"`
	Scheduler  string   `json:"scheduler"`
	Flags      []string `json:"flags"`
	// Health is "healthy/total" per director.
	Health map[string]string `json:"health"`
	// Programmed is false (with Errors) where IPVS refused the service.
	Errors map[string]string `json:"errors"`
	// Fingerprints per director; Mismatch when they differ.
	Fingerprints map[string]string  `json:"fingerprints"`
	Mismatch     bool               `json:"mismatch"`
	Totals       map[string]Numbers `json:"totals"`
	Backends     []BackendRow       `json:"backends"`
}

// BackendRow is one real server of a service across directors.
type BackendRow struct {
	// Key is "service/address:port", unique on the page.
	Key     string                 `json:"key"`
	Address string                 `json:"address"`
	Port    uint32                 `json:"port"`
	Cells   map[string]BackendCell `json:"cells"`
	// Disagree is set when connected directors see its health differently.
	Disagree bool    `json:"disagree"`
	Total    Numbers `json:"total"`
}

// BackendCell is a real server on one director.
type BackendCell struct {
	Health     string `json:"health"`
	Reason     string `json:"reason"`
	LastError  string `json:"last_error,omitempty"`
	Weight     int32  `json:"weight"`
	Configured int32  `json:"configured"`
	Draining   bool   `json:"draining"`
	Override   string `json:"override,omitempty"`
	Numbers
}

// Numbers are live IPVS figures: current connections and rates computed
// from counter deltas.
type Numbers struct {
	Active   int64   `json:"active"`
	Inactive int64   `json:"inactive"`
	CPS      float64 `json:"cps"`
	BPSIn    float64 `json:"bps_in"`
	BPSOut   float64 `json:"bps_out"`
}

func (n Numbers) plus(o Numbers) Numbers {
	return Numbers{n.Active + o.Active, n.Inactive + o.Inactive, n.CPS + o.CPS, n.BPSIn + o.BPSIn, n.BPSOut + o.BPSOut}
}

// PeerRow is one routing session of one director.
type PeerRow struct {
	Director   string    `json:"director"`
	Address    string    `json:"address"`
	ASN        uint32    `json:"asn"`
	State      string    `json:"state"`
	BFD        string    `json:"bfd"`
	Since      time.Time `json:"since"`
	Flaps      uint64    `json:"flaps"`
	Advertised int32     `json:"advertised"`
	LastError  string    `json:"last_error,omitempty"`
}

// EventRow is one event of one director's log.
type EventRow struct {
	Director string    `json:"director"`
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Kind     string    `json:"kind"`
	Subject  string    `json:"subject"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Reason   string    `json:"reason"`
	Who      string    `json:"who,omitempty"`
}

// snapshot is one director as the view builder sees it.
type snapshot struct {
	name, target string
	status       *directorv1.GetStatusResponse
	err          string
	updated      time.Time
	rates        map[string]Numbers // by backend key
}

// buildView lays the directors' statuses side by side, in the order given.
// Rows come in the first director's order, then rows only others have.
func buildView(snaps []snapshot, events []EventRow, now time.Time) View {
	// Empty lists are [] in JSON, never null, so the page can iterate them.
	v := View{Generated: now, Events: events, Directors: []DirectorView{}, VIPs: []VIPRow{}, Services: []ServiceRow{}, Peers: []PeerRow{}}
	if v.Events == nil {
		v.Events = []EventRow{}
	}
	vips := map[string]int{} // row index by address
	svcs := map[string]int{} // row index by name
	for _, s := range snaps {
		v.Directors = append(v.Directors, directorView(s))
		if s.status == nil {
			continue
		}
		addVIPs(&v, vips, s)
		addServices(&v, svcs, s)
		for _, p := range s.status.GetPeers() {
			v.Peers = append(v.Peers, PeerRow{Director: s.name, Address: p.GetAddress(), ASN: p.GetAsn(),
				State: enumName(p.GetState().String(), "PEER_STATE_"), BFD: enumName(p.GetBfdState().String(), "BFD_STATE_"),
				Since: p.GetSince().AsTime(), Flaps: p.GetFlaps(), Advertised: p.GetAdvertised(), LastError: p.GetLastError()})
		}
	}
	markDisagreements(&v, snaps)
	return v
}

func directorView(s snapshot) DirectorView {
	d := DirectorView{Name: s.name, Target: s.target, Connected: s.err == "" && s.status != nil, Error: s.err, Updated: s.updated}
	st := s.status
	if st == nil {
		return d
	}
	d.Daemon, d.Learning, d.ShuttingDown, d.Fingerprint = st.GetDirector(), st.GetLearning(), st.GetShuttingDown(), st.GetIpvsFingerprint()
	d.Version, d.Digest, d.Loaded = st.GetConfig().GetVersion(), st.GetConfig().GetDigest(), st.GetConfig().GetLoaded().AsTime()
	if n := st.GetDrained(); n != nil {
		d.Drained = noteOf(n)
	}
	if r := st.GetReconcile(); r != nil {
		d.Passes, d.Failed, d.LastError, d.Withdrawn = r.GetPasses(), r.GetFailedPasses(), r.GetLastError(), r.GetWithdrawnForFailures()
	}
	return d
}

func noteOf(n *directorv1.Note) *Note {
	out := &Note{Reason: n.GetReason(), Who: n.GetWho()}
	if n.GetExpires() != nil {
		out.Expires = n.GetExpires().AsTime()
	}
	return out
}

func addVIPs(v *View, rows map[string]int, s snapshot) {
	disabled := map[string]bool{}
	for _, o := range s.status.GetOverrides() {
		if o.GetKind() == directorv1.OverrideKind_OVERRIDE_KIND_DISABLE_VIP {
			disabled[o.GetVip()] = true
		}
	}
	for _, x := range s.status.GetVips() {
		i, ok := rows[x.GetAddress()]
		if !ok {
			i = len(v.VIPs)
			rows[x.GetAddress()] = i
			v.VIPs = append(v.VIPs, VIPRow{Address: x.GetAddress(), Cells: map[string]VIPCell{}})
		}
		r := &v.VIPs[i]
		for _, name := range x.GetServices() {
			if !slices.Contains(r.Services, name) {
				r.Services = append(r.Services, name)
			}
		}
		r.Cells[s.name] = VIPCell{State: enumName(x.GetState().String(), "VIP_STATE_"), Reason: x.GetReason(),
			Since: x.GetSince().AsTime(), Disabled: disabled[x.GetAddress()]}
	}
}

func addServices(v *View, rows map[string]int, s snapshot) {
	for _, x := range s.status.GetServices() {
		i, ok := rows[x.GetName()]
		if !ok {
			i = len(v.Services)
			rows[x.GetName()] = i
			v.Services = append(v.Services, ServiceRow{Name: x.GetName(), VIP: x.GetVip(), Port: x.GetPort(),
				Protocol: enumName(x.GetProtocol().String(), "PROTOCOL_"), Forwarding: enumName(x.GetForwarding().String(), "FORWARDING_"),
				Scheduler: x.GetScheduler(), Flags: x.GetSchedulerFlags(), Health: map[string]string{}, Errors: map[string]string{},
				Fingerprints: map[string]string{}, Totals: map[string]Numbers{}})
		}
		r := &v.Services[i]
		r.Health[s.name] = strconv.Itoa(int(x.GetHealthy())) + "/" + strconv.Itoa(int(x.GetTotal()))
		if !x.GetProgrammed() {
			r.Errors[s.name] = x.GetError()
		}
		if x.GetForwarding() != directorv1.Forwarding_FORWARDING_LOCAL {
			r.Fingerprints[s.name] = x.GetFingerprint()
		}
		var total Numbers
		for _, b := range x.GetBackends() {
			cell := backendCell(b, s.rates[backendKey(x.GetName(), b.GetAddress(), b.GetPort())])
			total = total.plus(cell.Numbers)
			row := backendRow(r, x.GetName(), b)
			row.Cells[s.name] = cell
			row.Total = row.Total.plus(cell.Numbers)
		}
		r.Totals[s.name] = total
	}
}

// backendRow finds or adds the row of b in service row r.
func backendRow(r *ServiceRow, service string, b *directorv1.Backend) *BackendRow {
	key := backendKey(service, b.GetAddress(), b.GetPort())
	for i := range r.Backends {
		if r.Backends[i].Key == key {
			return &r.Backends[i]
		}
	}
	r.Backends = append(r.Backends, BackendRow{Key: key, Address: b.GetAddress(), Port: b.GetPort(), Cells: map[string]BackendCell{}})
	return &r.Backends[len(r.Backends)-1]
}

func backendCell(b *directorv1.Backend, rates Numbers) BackendCell {
	c := BackendCell{Health: enumName(b.GetHealth().GetState().String(), "HEALTH_STATE_"), Reason: b.GetReason(),
		LastError: b.GetHealth().GetLastError(), Weight: b.GetEffectiveWeight(), Configured: b.GetConfiguredWeight(),
		Draining: b.GetDraining(), Override: b.GetOverride(), Numbers: rates}
	c.Active, c.Inactive = b.GetCounters().GetActiveConns(), b.GetCounters().GetInactiveConns()
	return c
}

// backendKey names a backend on the page and in the rate tracker.
func backendKey(service, addr string, port uint32) string {
	if strings.Contains(addr, ":") {
		addr = "[" + addr + "]"
	}
	return service + "/" + addr + ":" + strconv.Itoa(int(port))
}

// markDisagreements flags rows where connected directors differ: VIP
// states, backend health, service and director fingerprints.
func markDisagreements(v *View, snaps []snapshot) {
	connected := map[string]bool{}
	for _, s := range snaps {
		connected[s.name] = s.err == "" && s.status != nil
	}
	for i := range v.VIPs {
		v.VIPs[i].Disagree = differ(v.VIPs[i].Cells, connected, func(c VIPCell) string { return c.State })
	}
	for i := range v.Services {
		r := &v.Services[i]
		r.Mismatch = differ(r.Fingerprints, connected, func(f string) string { return f })
		for j := range r.Backends {
			b := &r.Backends[j]
			b.Disagree = differ(b.Cells, connected, func(c BackendCell) string { return c.Health })
		}
	}
	prints := map[string]string{}
	for _, d := range v.Directors {
		if d.Fingerprint != "" {
			prints[d.Name] = d.Fingerprint
		}
	}
	mismatch := differ(prints, connected, func(f string) string { return f })
	for i := range v.Directors {
		v.Directors[i].Mismatch = mismatch && prints[v.Directors[i].Name] != ""
	}
}

// differ reports whether the connected directors' values differ (a
// director that lacks the row counts as different when others have it).
func differ[T any](cells map[string]T, connected map[string]bool, val func(T) string) bool {
	seen := ""
	first := true
	for name, ok := range connected {
		if !ok {
			continue
		}
		c, has := cells[name]
		s := "\x00missing"
		if has {
			s = val(c)
		}
		if first {
			seen, first = s, false
		} else if s != seen {
			return true
		}
	}
	return false
}

// enumName turns "VIP_STATE_ADVERTISED" into "advertised".
func enumName(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}
