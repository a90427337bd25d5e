package main

import (
	"time"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/ipvs/dataplane"
)

// repairVIP is the repair kind of a VIP bound again after it was removed
// behind the daemon's back (its address deleted, or its local route).
const repairVIP = "vip_address"

// repairKinds are the kinds of kernel state the adapters repair, the label
// values of directord_drift_repairs_total.
func repairKinds() []string {
	return []string{dataplane.RepairService, dataplane.RepairSysctl, dataplane.RepairSyncDaemon, repairVIP}
}

// repaired records one repair of kernel state changed behind the daemon's
// back (the adapter that made it logged it): the metric and an event for
// directorctl watch. Adapters call it from the loop's passes, after
// newDaemon has set everything it uses.
func (d *daemon) repaired(kind, subject, detail string) {
	d.metrics.ObserveRepair(kind)
	d.loop.Events().Append(announcer.Event{Time: time.Now(), Kind: announcer.EventRepair, Subject: subject,
		To: "repaired", Reason: kind + ": " + detail})
}
