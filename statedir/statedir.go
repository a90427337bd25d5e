// Package statedir keeps what directord must remember across restarts and
// upgrades, in its state directory (director.state_dir, /var/lib/directord
// by default): the operator overrides (who, why, until when), the
// configuration history (each version's digest, time, who, where from, and
// the file itself, so a rollback works after a restart), and what the
// daemon owns in the kernel (IPVS services, VIP bindings, and how its routes are marked), so a
// service removed from the configuration while the daemon was down is
// removed at the next start.
//
// The directory holds state.json (a File, with a format version) and
// configs/DIGEST.yaml (one per kept configuration, written once). Every
// file is replaced atomically (internal/atomicfile). A state file that is
// corrupt, truncated, unreadable or from a newer directord is set aside
// (renamed state.json.bad-TIME), never deleted, and the daemon runs from
// its configuration alone; Restored says so.
//
// The types here are the on-disk format: plain structs with explicit JSON
// names, apart from the announcer's own types, so a refactoring there cannot
// change the file silently. Format is raised when a change is not
// backward-compatible.
package statedir

import (
	"net/netip"
	"time"
)

// Format is the state file format this package writes and the newest it
// reads.
const Format = 1

// File is the content of state.json.
type File struct {
	// Format is the format version (Format when written by this package).
	Format int `json:"format"`
	// Director is the director's name when it was written, for operators
	// reading the file; it is not checked.
	Director string `json:"director,omitempty"`
	// Written is when the file was written.
	Written time.Time `json:"written"`
	// Overrides are the operator overrides in force.
	Overrides []Override `json:"overrides,omitempty"`
	// Configs is the configuration history, oldest first; the last one is
	// the configuration that ran. Each one's file is configs/DIGEST.yaml.
	Configs []Config `json:"configs,omitempty"`
	// Owned is what the daemon may hold in the kernel.
	Owned Owned `json:"owned"`
}

// OverrideKind says what an Override does.
type OverrideKind string

// The override kinds.
const (
	// DrainBackend sets matching backends to weight 0.
	DrainBackend OverrideKind = "drain-backend"
	// SetWeight replaces matching backends' weight.
	SetWeight OverrideKind = "weight"
	// DisableVIP withdraws a VIP.
	DisableVIP OverrideKind = "disable-vip"
	// DrainDirector withdraws every VIP.
	DrainDirector OverrideKind = "drain-director"
)

// Override is one operator override. Service, Address and Port select
// backends (an empty service or a zero port matches all) for DrainBackend
// and SetWeight; Address is the VIP for DisableVIP; DrainDirector uses
// none of them.
type Override struct {
	// Kind is what the override does.
	Kind OverrideKind `json:"kind"`
	// Service is the service name ("" for every service).
	Service string `json:"service,omitempty"`
	// Address is the backend's address, or the VIP.
	Address netip.Addr `json:"address,omitzero"`
	// Port is the backend's port (0 for every port).
	Port uint16 `json:"port,omitempty"`
	// Weight is SetWeight's weight.
	Weight int `json:"weight,omitempty"`
	// Reason is the operator's explanation.
	Reason string `json:"reason,omitempty"`
	// Who set it.
	Who string `json:"who,omitempty"`
	// Created is when it was set.
	Created time.Time `json:"created"`
	// Expires is when it lapses (zero: never).
	Expires time.Time `json:"expires,omitzero"`
}

// Config is one version of the configuration history.
type Config struct {
	// Version is the version number, counted across restarts.
	Version int `json:"version"`
	// Digest is config.Digest of the file; its content is
	// configs/DIGEST.yaml.
	Digest string `json:"digest"`
	// Source is the file it was read from.
	Source string `json:"source"`
	// Loaded is when it was loaded.
	Loaded time.Time `json:"loaded"`
	// Who loaded it ("" for the daemon itself: a start or a SIGHUP).
	Who string `json:"who,omitempty"`
	// Reason says how it came to run: "start", "reload: SIGHUP", "rollback
	// to version 3: ...".
	Reason string `json:"reason,omitempty"`
}

// Owned is what the daemon may hold in the kernel: a superset of what it
// holds, recorded before anything new is programmed.
type Owned struct {
	// IPVS lists the virtual services.
	IPVS []Service `json:"ipvs,omitempty"`
	// VIPs lists the VIPs bound locally.
	VIPs []netip.Addr `json:"vips,omitempty"`
	// Marks say how the VIP bindings and the routes (announce: kernel) are
	// recognised in the kernel, so a daemon started with other marks can
	// find and remove them. Routes are not listed: they come and go with
	// health, and their table and protocol find them all.
	Marks Marks `json:"marks"`
}

// Service identifies an IPVS virtual service.
type Service struct {
	// Protocol is the IP protocol number (6 tcp, 17 udp).
	Protocol uint8 `json:"protocol"`
	// VIP is the virtual address.
	VIP netip.Addr `json:"vip"`
	// Port is the virtual port.
	Port uint16 `json:"port"`
}

// Marks are the kernel settings VIP bindings and routes were made with.
type Marks struct {
	// Announce is the announce mode (bgp, kernel, none).
	Announce string `json:"announce,omitempty"`
	// VIPInterface is the device VIPs are bound to.
	VIPInterface string `json:"vip_interface,omitempty"`
	// VIPBinding is "address" or "local-route".
	VIPBinding string `json:"vip_binding,omitempty"`
	// Protocol is the address and route protocol mark (kernel.protocol).
	Protocol int `json:"protocol,omitempty"`
	// RouteTable is the routing table of announce: kernel (kernel.table).
	RouteTable int `json:"route_table,omitempty"`
}
