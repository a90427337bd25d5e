package announcer

import (
	"log/slog"

	"github.com/anycast-director/director/internal/logmany"
)

// vipChanges collects the VIPs a pass advertised or withdrew, for the log.
type vipChanges struct {
	groups []vipChange
}

// vipChange is the VIPs that changed the same way for the same reason.
type vipChange struct {
	on     bool
	reason string
	vips   []string
}

// add records vp's change to advertised (on) or withdrawn.
func (c *vipChanges) add(vp VIPPlan, on bool) {
	for i := range c.groups {
		if g := &c.groups[i]; g.on == on && g.reason == vp.Reason {
			g.vips = append(g.vips, vp.VIP.String())
			return
		}
	}
	c.groups = append(c.groups, vipChange{on: on, reason: vp.Reason, vips: []string{vp.VIP.String()}})
}

// log writes "VIP advertised" or "VIP withdrawn" per VIP, or, for a group
// larger than logmany.MaxLines, one "VIPs advertised" or "VIPs withdrawn"
// line (each VIP then at debug). A shutdown withdraws every VIP at once; the
// event log keeps one event per VIP either way.
func (c *vipChanges) log(log *slog.Logger) {
	for _, g := range c.groups {
		_, to := vipStates(g.on)
		logmany.Log(log, "VIP "+to, "VIPs "+to, "vip", g.vips, g.reason)
	}
}
